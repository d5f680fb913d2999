"""A replica set's template worker, seen from the supervisor: started once, asked for replicas.

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
- A template that dies once it was ready (killed, out of memory) is started again in the
  background (a ``TEMPLATE_RESTARTED`` event); its replicas are not its children in any way
  that matters and go on serving.
- Like a worker it outlives regserve: it has a record (``<digest>.tpl`` beside its control
  socket, not a ``*.pid`` file, so worker adoption never takes it for a replica);
  :meth:`abandon` (regserve restarting, keeping its workers) only lets go of it, and the
  replica set of the next process adopts it when its record still names a running template
  of the same model and interpreter (else it is stopped and a new one started). Nobody
  adopting it, it stops by itself after ``REGSERVE_ORPHAN_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from regserve.backends.local.logs import note
from regserve.backends.local.paths import WorkerPaths
from regserve.backends.local.process import WorkerProcess, describe_exit, stop_pid, terminate
from regserve.backends.local.records import WorkerRecord, is_running, read_record, remove_record
from regserve.worker.exits import EXIT_FORK_UNSAFE

__all__ = ["Template"]

_log = logging.getLogger("regserve.supervisor")
_ASK_TIMEOUT = 10.0
_POLL = 0.05

Launch = Callable[[WorkerPaths], Awaitable[WorkerProcess]]
"""Start ``python -m regserve.worker --template`` with its control socket at ``paths.socket``
(recorded in ``paths.pidfile``)."""
Fits = Callable[[WorkerRecord], bool]
"""Whether a template a previous process left runs what this set would start."""


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
    ) -> None:
        self.paths = paths
        self._label = label
        self._launch = launch
        self._fits = fits
        self._place = place
        """Puts an adopted template under the cluster's current limits."""
        self._report = report
        """Told (event type, text) what the model's owner should know: the template is off
        for a reason they can act on, or it was lost and is started again."""
        self._start_timeout = start_timeout
        self._lock = asyncio.Lock()
        self._process: WorkerProcess | None = None
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._broken = False
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def process(self) -> WorkerProcess | None:
        """The running template process (its record: interpreter, control socket), if any."""
        process = self._process
        return process if process is not None and process.returncode is None else None

    async def fork(self, socket: Path, log: Path, orphan_timeout: float) -> int | None:
        """The pid of a replica forked to serve on ``socket``; None: start a fresh worker."""
        async with self._lock:
            if not await self._ready():
                return None
            answer = await self._ask(
                {"op": "fork", "socket": str(socket), "log": str(log),
                 "orphan_timeout": orphan_timeout}
            )  # fmt: skip
        pid = answer.get("pid") if answer else None
        if not isinstance(pid, int):
            _log.warning("the template of %s could not fork: %s", self._label, answer)
            return None
        return pid

    async def exit_code(self, pid: int) -> int | None:
        """How a replica forked from the running template ended (None: not known)."""
        async with self._lock:
            if self._stream is None:
                return None
            answer = await self._ask({"op": "exit", "pid": pid})
        code = answer.get("code") if answer else None
        return code if isinstance(code, int) else None

    def warm(self) -> None:
        """Start the template in the background (replicas adopted, or a template lost)."""
        self._in_background(self._warm(), f"template of {self._label}")

    async def _warm(self) -> None:
        async with self._lock:
            await self._ready()

    async def stop(self) -> None:
        self.abandon()
        await terminate(self._process)
        remove_record(self.paths.pidfile)

    def abandon(self) -> None:
        """Let go of it, running, for the next process to adopt (regserve is restarting)."""
        self._closed = True
        for task in list(self._background):
            task.cancel()
        self._disconnect()

    # -- internals ---------------------------------------------------------------------------

    async def _ready(self) -> bool:
        """Connected to a running template, starting it when needed (with the lock held)."""
        if self._closed or self._broken:
            return False
        if self._stream is not None and self.process is not None:
            return True
        self._disconnect()
        if self._process is None and await self._adopt():
            return True
        try:
            process = self._process = await self._launch(self.paths)
        except OSError as exc:
            return self._give_up(f"it could not be started: {exc}")
        if await self._connect(process):
            self._watch(process)
            _log.info("template worker pid %s of %s is ready", process.pid, self._label)
            return True
        await terminate(process)
        if process.returncode == EXIT_FORK_UNSAFE:
            why = ("the model is not safe to fork once loaded; the template's last lines in "
                   "the version's log say why")  # fmt: skip
            self._tell("TEMPLATE_DISABLED", f"Replicas start as fresh workers, not forked: {why}. "
                       "The model's tag regserve.fork_replicas=false skips the try.")  # fmt: skip
            return self._give_up(why)
        return self._give_up(f"it exited or was not ready within {self._start_timeout:g} s")

    async def _adopt(self) -> bool:
        """Connect to the template a previous process left, if it runs what this set would."""
        record = read_record(self.paths.pidfile)
        if record is None or not is_running(record):
            return False
        if not self._fits(record):
            _log.info("not adopting the template pid %s of %s: it runs another model or "
                      "interpreter", record.pid, self._label)  # fmt: skip
            await asyncio.to_thread(stop_pid, record)
            return False
        if self._place is not None:
            self._place(record.pid)
        process = WorkerProcess(record)
        with contextlib.suppress(OSError):
            self._stream = await asyncio.open_unix_connection(str(self.paths.socket))
            self._process = process
            self._watch(process)
            _log.info("adopted the template worker pid %s of %s", record.pid, self._label)
            return True
        return False

    def _give_up(self, why: str) -> bool:
        if self._closed:  # stopped while it started: nothing to report
            return False
        self._broken = True
        text = f"the template worker is off for this cluster ({why}); replicas start afresh"
        _log.warning("%s: %s", self._label, text)
        note(self.paths.log, text)
        return False

    async def _connect(self, process: WorkerProcess) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while process.returncode is None and loop.time() < deadline and not self._closed:
            if self.paths.socket.exists():
                with contextlib.suppress(OSError):
                    self._stream = await asyncio.open_unix_connection(str(self.paths.socket))
                    return True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), _POLL)
        return False

    def _watch(self, process: WorkerProcess) -> None:
        async def restart_when_lost() -> None:
            code = await process.wait()
            if self._closed or process is not self._process:
                return
            _log.warning("the template of %s exited (%s); starting it again", self._label, code)
            note(self.paths.log, f"template worker pid {process.pid} exited; starting it again")
            self._tell(
                "TEMPLATE_RESTARTED",
                f"The template worker pid {process.pid} "
                f"{describe_exit(code)}; starting it again. Its replicas serve on.",
            )
            async with self._lock:
                self._disconnect()
                await self._ready()

        self._in_background(restart_when_lost(), f"watch template of {self._label}")

    def _tell(self, event_type: str, text: str) -> None:
        if self._report is not None and not self._closed:
            self._report(event_type, text)

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """One request and its answer (with the lock held); None when the template is lost."""
        if self._stream is None:
            return None
        reader, writer = self._stream
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), _ASK_TIMEOUT)
            answer = json.loads(line) if line else None
        except (OSError, ValueError, asyncio.TimeoutError):
            answer = None
        if not isinstance(answer, dict):
            self._disconnect()
            return None
        return answer

    def _disconnect(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None
