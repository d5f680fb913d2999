"""The one supervision loop, in process, with real processes (``sleep`` and ``false``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from regserve.backends.local.process import ProcessHandle
from regserve.backends.local.supervision import RestartPolicy, supervise


def test_the_first_restart_is_immediate_then_the_backoff_doubles_to_its_cap() -> None:
    policy = RestartPolicy(max_restarts=9, backoff_base=1.0, backoff_max=5.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]


@dataclass
class Recorder:
    """A supervisee that runs ``argv`` and writes down what it is told."""

    argv: list[str]
    ready: bool = True
    said: list[str] = field(default_factory=list)
    processes: list[ProcessHandle] = field(default_factory=list)
    launched: asyncio.Event = field(default_factory=asyncio.Event)
    turns: bool = False
    """Write down when a start's turn is taken and given back."""

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self.turns:
            self.said.append("turn")
        try:
            yield
        finally:
            if self.turns:
                self.said.append("turn over")

    async def launch(self) -> ProcessHandle:
        process = await asyncio.create_subprocess_exec(*self.argv)
        self.processes.append(process)
        self.said.append("launch")
        self.launched.set()
        return process

    async def wait_ready(self, process: ProcessHandle) -> bool:
        return self.ready

    async def serving(self, process: ProcessHandle, restarted: bool) -> None:
        self.said.append(f"serving restarted={restarted}")

    async def unready(self, process: ProcessHandle) -> bool:
        self.said.append("unready")
        return True

    async def wait_exit(self, process: ProcessHandle) -> int:
        return await process.wait()

    async def explain(self, process: ProcessHandle, code: int) -> str:
        return f"exit {code}"

    def charge(self, why: str) -> int | None:
        return None

    def restarting(self, why: str, delay: float, crashes: int) -> None:
        self.said.append(f"restarting {why} in {delay:g} ({crashes})")

    def give_up(self, why: str, crashes: int) -> None:
        self.said.append(f"give up {why} ({crashes})")

    def cannot_start(self, error: Exception) -> None:
        self.said.append(f"cannot start {type(error).__name__}")

    async def stopped_while_starting(self, process: ProcessHandle) -> None:
        process.kill()
        await process.wait()
        self.said.append("stopped while starting")


async def test_a_killed_process_comes_back_at_once_and_serves_again() -> None:
    recorder = Recorder(["sleep", "60"])
    stopping = asyncio.Event()
    task = asyncio.create_task(supervise(recorder, RestartPolicy(3, 10.0, 30.0), stopping))
    await asyncio.wait_for(recorder.launched.wait(), 10)
    recorder.launched.clear()
    recorder.processes[0].kill()  # SIGKILL
    await asyncio.wait_for(recorder.launched.wait(), 10)  # no 10 s backoff: at once
    await asyncio.sleep(0.1)
    stopping.set()
    recorder.processes[-1].kill()
    await asyncio.wait_for(task, 10)
    assert recorder.said[:4] == [
        "launch",
        "serving restarted=False",
        "restarting exit -9 in 0 (1)",
        "launch",
    ]
    assert recorder.said[4] == "serving restarted=True"


async def test_crashes_in_a_row_back_off_then_give_up() -> None:
    recorder = Recorder(["false"], ready=False)
    policy = RestartPolicy(max_restarts=3, backoff_base=0.05, backoff_max=1.0)
    await asyncio.wait_for(supervise(recorder, policy, asyncio.Event()), 10)
    assert recorder.said == [
        "launch",
        "unready",
        "restarting exit 1 in 0 (1)",
        "launch",
        "unready",
        "restarting exit 1 in 0.05 (2)",
        "launch",
        "unready",
        "give up exit 1 (3)",
    ]


async def test_a_stop_while_starting_stops_what_started() -> None:
    recorder = Recorder(["sleep", "60"])
    stopping = asyncio.Event()

    async def ready_after_stop(process: ProcessHandle) -> bool:
        stopping.set()
        return True

    recorder.wait_ready = ready_after_stop
    await asyncio.wait_for(supervise(recorder, RestartPolicy(3, 1.0, 1.0), stopping), 10)
    assert recorder.said == ["launch", "stopped while starting"]
    assert recorder.processes[0].returncode is not None


async def test_a_process_that_cannot_start_is_said_once() -> None:
    recorder = Recorder(["/nonexistent/program"])
    await asyncio.wait_for(supervise(recorder, RestartPolicy(3, 1.0, 1.0), asyncio.Event()), 10)
    assert recorder.said == ["cannot start FileNotFoundError"]


async def test_a_start_holds_its_turn_from_its_launch_until_it_serves_or_failed() -> None:
    recorder = Recorder(["false"], ready=False, turns=True)
    policy = RestartPolicy(max_restarts=2, backoff_base=0.05, backoff_max=1.0)
    await asyncio.wait_for(supervise(recorder, policy, asyncio.Event()), 10)
    assert recorder.said == [
        "turn",
        "launch",
        "unready",
        "turn over",  # given back before the crash is handled and the backoff waited
        "restarting exit 1 in 0 (1)",
        "turn",
        "launch",
        "unready",
        "turn over",
        "give up exit 1 (2)",
    ]
    serving = Recorder(["sleep", "60"], turns=True)
    stopping = asyncio.Event()
    task = asyncio.create_task(supervise(serving, policy, stopping))
    await asyncio.wait_for(serving.launched.wait(), 10)
    await asyncio.sleep(0.1)
    stopping.set()
    serving.processes[-1].kill()
    await asyncio.wait_for(task, 10)
    assert serving.said == ["turn", "launch", "serving restarted=False", "turn over"]
