"""A replica set's template worker, seen from the supervisor: started once, asked for replicas,
with a standby that takes over at once when it dies.

The template (:mod:`regserve.worker.template`) loads the version's model and forks replicas on
request, each serving within milliseconds instead of the seconds a fresh worker spends
importing MLflow and loading the model. It is an optimisation, never a dependency:

- :meth:`Template.fork` answers None whenever no template can be had (it failed to start, or
  broke), and the replica set then starts a fresh worker as it always could. A template that
  exits before it is ready (e.g. the model does not load) is not tried again for this set:
  the fresh worker then reports the failure in the usual words.
- A model that is not safe to fork once loaded (it started threads, initialised CUDA, runs
  TensorFlow or JAX: :func:`regserve.worker.template.fork_hazard`) makes the template exit
  with ``EXIT_FORK_UNSAFE``; ``report`` is told (a ``TEMPLATE_DISABLED`` event) and the
  replicas start afresh.
- **It is not a single point of failure.** Once ready, the template forks a *standby*: an idle
  copy of itself (pages shared copy-on-write, so it costs little memory) listening on a
  control socket of its own. When the template dies (killed, out of memory), the standby is
  promoted at once and forks a standby of its own; replicas that die meanwhile are forked
  from it, not started cold. A standby that dies is forked again. Only when both are gone is
  a template started cold (a ``TEMPLATE_RESTARTED`` event says which happened).
- It is supervised like every worker (:mod:`.supervision`): death is seen at once, restarts
  back off from the second crash in a row.
- Like a worker it outlives regserve: it has a record (``<digest>.tpl``, its standby's
  ``<digest>.tpl.standby``; not ``*.pid`` files, so worker adoption never takes them for
  replicas); :meth:`abandon` (regserve restarting, keeping its workers) only lets go of them,
  and the replica set of the next process adopts them when their records still name running
  templates of the same model and interpreter (else they are stopped and a new one started).
  Nobody adopting them, they stop by themselves after ``REGSERVE_ORPHAN_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from regserve.backends.local.logs import note
from regserve.backends.local.paths import WorkerPaths
from regserve.backends.local.process import (
    ProcessHandle,
    WorkerProcess,
    describe_exit,
    stop_pid,
    terminate,
)
from regserve.backends.local.supervision import RestartPolicy, supervise
from regserve.backends.local.worker_records import (
    WorkerRecord,
    is_running,
    process_start_time,
    read_record,
    remove_record,
    write_record,
)
from regserve.worker import wire
from regserve.worker.exits import EXIT_FORK_UNSAFE
from regserve.worker.text import log_safe

__all__ = ["Template"]

_log = logging.getLogger("regserve.supervisor")
_ASK_TIMEOUT = 10.0
_POLL = 0.05

Launch = Callable[[WorkerPaths], Awaitable[WorkerProcess]]
"""Start ``python -m regserve.worker --template`` with its control socket at ``paths.socket``
(recorded in ``paths.pidfile``)."""
Fits = Callable[[WorkerRecord], bool]
"""Whether a template a previous process left runs what this set would start."""


class _Control:
    """A connection to one template process's control socket (:mod:`.wire` frames): one
    question at a time."""

    def __init__(
        self, process: WorkerProcess, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.process = process
        self._reader, self._writer = reader, writer
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.lost = False

    @classmethod
    async def connect(cls, process: WorkerProcess, socket: Path) -> _Control:
        reader, writer = await asyncio.open_unix_connection(str(socket))
        return cls(process, reader, writer)

    @property
    def alive(self) -> bool:
        """Connected, and its process still runs (read from /proc: its death may not have
        reached the event loop yet)."""
        running = self.process.returncode is None and is_running(self.process.record)
        return not self.lost and running

    async def ask(self, frame: Callable[[int], bytes]) -> wire.Reply | None:
        """One request (``frame(request_id)``) and its REPLY; None (and the connection
        closed) when it is lost."""
        async with self._lock:
            if self.lost:
                return None
            request_id = next(self._ids)
            try:
                self._writer.write(frame(request_id))
                await self._writer.drain()
                answer = await asyncio.wait_for(self._reply(request_id), _ASK_TIMEOUT)
            except (OSError, ValueError, EOFError, asyncio.TimeoutError):
                answer = None
        if answer is None:
            self.close()
        return answer

    async def _reply(self, request_id: int) -> wire.Reply | None:
        header = await self._reader.readexactly(wire.HEADER.size)
        length, answered, kind = wire.HEADER.unpack(header)
        payload = await self._reader.readexactly(length)
        if (answered, kind) != (request_id, wire.Kind.REPLY):
            return None  # not an answer to this question: the template is out of step
        return wire.decode_reply(payload)

    def close(self) -> None:
        self.lost = True
        self._writer.close()


class Template:
    """The template worker of one replica set (one version, one cluster generation)."""

    def __init__(
        self,
        paths: WorkerPaths,
        label: str,
        launch: Launch,
        fits: Fits,
        start_timeout: float,
        place: Callable[[int], None] | None = None,
        report: Callable[[str, str], None] | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.paths = paths
        self._label = label
        self._launch = launch
        self._fits = fits
        self._place = place
        """Puts an adopted or forked template under the cluster's current limits."""
        self._report = report
        """Told (event type, text) what the model's owner should know: the template is off
        for a reason they can act on, or it was lost and is started again."""
        self._start_timeout = start_timeout
        self._policy = policy or RestartPolicy(3, 1.0, 30.0)
        self._standby_record = paths.pidfile.with_name(paths.pidfile.name + ".standby")
        self._socket_names = itertools.count(1)
        self._main: _Control | None = None
        self._standby: _Control | None = None
        self._up = asyncio.Event()
        """Set while a template is connected and can fork."""
        self._broken = False
        self._closed = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._forking: asyncio.Future[WorkerProcess | None] | None = None
        """The standby being forked, if any (see :meth:`stop`)."""
        self._starting: WorkerProcess | None = None
        """The template last started cold (until it is connected it is nowhere else)."""

    @property
    def process(self) -> WorkerProcess | None:
        """The running template process (its record: interpreter, control socket), if any."""
        main = self._main
        return main.process if main is not None and main.alive else None

    def pids(self) -> list[int]:
        """The running template's pid and its standby's (the memory budget measures them)."""
        controls = (self._main, self._standby)
        return [c.process.pid for c in controls if c is not None and c.alive]

    @property
    def up(self) -> bool:
        """It runs and forks now: a replica forked from it costs milliseconds."""
        main = self._main
        return self._up.is_set() and not self._broken and main is not None and main.alive

    async def fork(self, socket: Path, orphan_timeout: float) -> int | None:
        """The pid of a replica forked to serve on ``socket`` (its output in the version's log,
        as the template's); None: start a fresh worker."""
        self.warm()
        if self._broken or self._closed:
            return None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wait_up(), self._start_timeout)
        main = self._main
        if main is None or not main.alive:
            return None
        fork: wire.Fork = {"socket": str(socket), "orphan_timeout": orphan_timeout}
        answer = await main.ask(lambda request_id: wire.encode_fork(request_id, fork))
        pid = answer.get("pid") if answer else None
        if not isinstance(pid, int):
            _log.warning("the template of %s could not fork: %s", log_safe(self._label), answer)
            return None
        return pid

    async def _wait_up(self) -> None:
        while not (self._broken or self._closed):
            await self._up.wait()
            if self._main is not None and self._main.alive:
                return
            await asyncio.sleep(_POLL)  # lost meanwhile: its supervision restarts it

    async def exit_code(self, pid: int) -> int | None:
        """How a replica forked from the running template ended (None: not known). Never waits
        for a template that is restarting."""
        main = self._main
        if main is None or not main.alive:
            return None
        answer = await main.ask(lambda request_id: wire.encode_exit(request_id, {"pid": pid}))
        code = answer.get("code") if answer else None
        return code if isinstance(code, int) else None

    def warm(self) -> None:
        """Start (or adopt) the template in the background, if it is not running yet."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(
                supervise(_Supervised(self), self._policy, self._stopping),
                name=f"template of {self._label}",
            )

    async def stop(self) -> None:
        processes = [c.process for c in (self._main, self._standby) if c is not None]
        if self._starting is not None:  # started cold, still loading: not connected yet
            processes.append(self._starting)
        self.abandon()  # cancels its supervision, which would have stopped a starting one
        if self._forking is not None:  # a standby being forked: it is stopped too
            with contextlib.suppress(Exception):
                forked = await asyncio.wait_for(asyncio.shield(self._forking), _ASK_TIMEOUT)
                processes += [forked] if forked is not None else []
        await asyncio.gather(*(terminate(p) for p in {id(p): p for p in processes}.values()))
        remove_record(self.paths.pidfile)
        remove_record(self._standby_record)

    def abandon(self) -> None:
        """Let go of it, running, for the next process to adopt (regserve is restarting)."""
        self._closed = True
        self._stopping.set()
        self._up.set()  # whoever waits for it gives up now
        for task in [*self._background, *([self._task] if self._task else [])]:
            task.cancel()
        for control in (self._main, self._standby):
            if control is not None:
                control.close()

    # -- starting, promoting, adopting -----------------------------------------------------------

    async def _start(self, lost: str) -> tuple[WorkerProcess, bool]:
        """The template to serve from, and whether it was promoted: the standby, the one a
        previous process left, or a new one started cold. ``lost``: why the last one is gone
        (an event says how it is replaced), or "" at the first start."""
        standby, self._standby = self._standby, None
        promoted = standby is not None and standby.alive
        if lost:
            then = "its standby takes over" if promoted else "starting it again"
            _log.warning("%s of %s; %s", lost, log_safe(self._label), then)
            note(self.paths.log, f"{lost}; {then}")
            self._tell("TEMPLATE_RESTARTED", f"{lost}; {then}. Its replicas serve on.")
        if standby is not None and promoted:
            self._promote(standby)
            return standby.process, True
        if standby is not None:
            standby.close()
        adopted = await self._adopt()
        if adopted is not None:
            return adopted, False
        self._starting = await self._launch(self.paths)
        return self._starting, False

    def _promote(self, standby: _Control) -> None:
        self._main = standby
        record = read_record(self._standby_record)
        if record is not None:
            write_record(self.paths.pidfile, record)
        remove_record(self._standby_record)
        _log.info(
            "the standby template pid %s of %s took over",
            standby.process.pid,
            log_safe(self._label),
        )

    async def _adopt(self) -> WorkerProcess | None:
        """Connect to the template (and standby) a previous process left, if they run what
        this set would; stop them otherwise."""
        main = await self._adopt_one(self.paths.pidfile)
        if main is None:
            return None
        self._main = main
        self._standby = await self._adopt_one(self._standby_record)
        _log.info(
            "adopted the template worker pid %s of %s", main.process.pid, log_safe(self._label)
        )
        return main.process

    async def _adopt_one(self, path: Path) -> _Control | None:
        record = read_record(path)
        if record is None or not is_running(record):
            return None
        if not self._fits(record):
            _log.info(
                "not adopting the template pid %s of %s: it runs another model or interpreter",
                record.pid,
                log_safe(self._label),
            )
            await asyncio.to_thread(stop_pid, record)
            remove_record(path)
            return None
        if self._place is not None:
            self._place(record.pid)
        try:
            return await _Control.connect(WorkerProcess(record), Path(record.socket))
        except OSError:
            return None

    async def _connect(self, process: ProcessHandle) -> bool:
        """Connect to a template just started (its control socket appears once it loaded)."""
        assert isinstance(process, WorkerProcess)
        if self._main is not None and self._main.process is process:  # promoted or adopted
            return self._main.alive
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while process.returncode is None and loop.time() < deadline and not self._closed:
            with contextlib.suppress(OSError):
                self._main = await _Control.connect(process, self.paths.socket)
                return True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), _POLL)
        return False

    def _fork_standby(self) -> None:
        """A standby copy of the running template, forked in the background."""
        self._in_background(self._make_standby(), f"standby template of {self._label}")

    async def _make_standby(self) -> None:
        # Shielded: a standby forked is recorded even when this is cancelled (a stop), so
        # that the stop finds it and nothing outlives the template.
        self._forking = asyncio.ensure_future(self._fork_and_record())
        standby = await asyncio.shield(self._forking)
        if standby is None:
            return
        control = await self._connect_standby(standby, Path(standby.record.socket))
        if control is None:
            await terminate(standby)
            remove_record(self._standby_record)
            return
        self._standby = control
        code = await standby.wait()
        if self._standby is control and not self._closed:  # it died as a standby: again
            self._standby = None
            control.close()
            _log.warning(
                "the standby template pid %s of %s %s; forking another",
                standby.pid,
                log_safe(self._label),
                describe_exit(code),
            )
            self._fork_standby()

    async def _fork_and_record(self) -> WorkerProcess | None:
        main = self._main
        if main is None or not main.alive or self._closed:
            return None
        socket = self.paths.socket.with_name(
            f"{self.paths.socket.stem}.s{next(self._socket_names)}.sock"
        )
        standby: wire.Standby = {"socket": str(socket)}
        answer = await main.ask(lambda request_id: wire.encode_standby(request_id, standby))
        pid = answer.get("pid") if answer else None
        if not isinstance(pid, int):
            _log.warning("the template of %s made no standby: %s", log_safe(self._label), answer)
            return None
        if self._place is not None:
            self._place(pid)
        parent = main.process.record
        record = dataclasses.replace(
            parent,
            pid=pid,
            start_time=process_start_time(pid) or 0,
            socket=str(socket),
            created_at=time.time(),
            forked_from=parent.forked_from or parent.socket,
        )
        write_record(self._standby_record, record)
        return WorkerProcess(record)

    async def _connect_standby(self, process: WorkerProcess, socket: Path) -> _Control | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _ASK_TIMEOUT
        while process.returncode is None and loop.time() < deadline and not self._closed:
            with contextlib.suppress(OSError):
                return await _Control.connect(process, socket)
            await asyncio.sleep(_POLL)
        return None

    def _give_up(self, why: str) -> None:
        self._broken = True
        self._up.set()  # forks waiting for it start fresh workers now
        if self._closed:  # stopped while it started: nothing to report
            return
        text = f"the template worker is off for this cluster ({why}); replicas start afresh"
        _log.warning("%s: %s", log_safe(self._label), text)
        note(self.paths.log, text)

    def _tell(self, event_type: str, text: str) -> None:
        if self._report is not None and not self._closed:
            self._report(event_type, text)

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class _Supervised:
    """The template role (whichever process holds it), as :func:`supervise` sees it."""

    def __init__(self, template: Template) -> None:
        self._template = template
        self._promoted = False
        self._lost = ""
        """Why the template is being replaced (set when it died), or ""."""

    def turn(self) -> AbstractAsyncContextManager[object]:
        """No turn to wait for: the replica that asked for it holds one (its launch waits
        for the template). A template lost with its standby starts again outside the bound."""
        return contextlib.nullcontext()

    async def launch(self) -> ProcessHandle:
        process, self._promoted = await self._template._start(self._lost)
        self._lost = ""
        return process

    async def wait_ready(self, process: ProcessHandle) -> bool:
        return await self._template._connect(process)

    async def serving(self, process: ProcessHandle, restarted: bool) -> None:
        t = self._template
        how = "took over from the lost one" if self._promoted else "is ready"
        _log.info("template worker pid %s of %s %s", process.pid, log_safe(t._label), how)
        t._up.set()
        if t._standby is None or not t._standby.alive:
            t._fork_standby()

    async def unready(self, process: ProcessHandle) -> bool:
        t = self._template
        await terminate(process)
        if process.returncode == EXIT_FORK_UNSAFE:
            why = (
                "the model is not safe to fork once loaded; the template's last lines in "
                "the version's log say why"
            )
            t._tell(
                "TEMPLATE_DISABLED",
                f"Replicas start as fresh workers, not forked: {why}. "
                "The model's tag regserve.fork_replicas=false skips the try.",
            )
            t._give_up(why)
        else:
            t._give_up(f"it exited or was not ready within {t._start_timeout:g} s")
        return False

    async def wait_exit(self, process: ProcessHandle) -> int:
        return await process.wait()

    async def explain(self, process: ProcessHandle, code: int) -> str:
        return f"The template worker pid {process.pid} {describe_exit(code)}"

    def charge(self, why: str) -> int | None:
        return None

    def restarting(self, why: str, delay: float, crashes: int) -> None:
        t = self._template
        t._up.clear()
        if t._main is not None:
            t._main.close()
        self._lost = why if not delay else f"{why} (again; after {delay:g} s)"

    def give_up(self, why: str, crashes: int) -> None:
        self._template._give_up(f"{why}, {crashes} times in a row")

    def cannot_start(self, error: Exception) -> None:
        self._template._give_up(f"it could not be started: {error}")

    async def stopped_while_starting(self, process: ProcessHandle) -> None:
        return None  # abandoned (kept for the next process) or stopped by Template.stop
