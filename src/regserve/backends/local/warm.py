"""A model's warm process for one environment, seen from the supervisor: started once, asked for
templates, supervised, adopted after a regserve restart.

The warm process (:mod:`regserve.worker.warm`) has imported MLflow, pandas and the flavor's
libraries (:mod:`.preload`) in the environment's interpreter, inside the model's sandbox (its
user, its allow-listed environment, its cgroup: never shared between models, whose code is
untrusted). A template forked from it only loads its model. Like a template, it is an
optimisation, never a dependency:

- :meth:`WarmProcess.fork_template` answers None whenever no warm process can be had (it is
  disabled, restarting after a crash, lost during the request), and the replica set then
  starts its template cold, as it always could: a warm process killed at any moment costs at
  most a cold start. While it is starting (its imports are what a cold template would do
  first) a request waits for it, then falls back if it does not come up.
- Libraries that are not safe to fork once imported (a thread started at import, CUDA,
  TensorFlow, JAX) make it exit with ``EXIT_FORK_UNSAFE``: ``WARM_PROCESS_DISABLED``, and
  templates start cold. So do ``REGSERVE_MAX_RESTARTS`` crashes in a row.
- It is supervised like every worker (:mod:`.supervision`): death is seen at once (a pidfd),
  restarts back off from the second crash in a row; each time it is ready,
  ``WARM_PROCESS_STARTED`` (not when it was adopted: nothing changed for the model's owner).
- It outlives regserve: its record (``<digest>.warm``) lets the next process adopt it when it
  still runs the same interpreter and speaks ``wire.WARM_PROTOCOL``; nobody adopting it, it
  stops after ``REGSERVE_ORPHAN_TIMEOUT``.

Its control connection is a blocking socket used from a thread: a ``TEMPLATE`` request carries
the version's log as a descriptor (``SCM_RIGHTS``), which asyncio's streams cannot send.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from regserve.backends.local.logs import note, rotate_if_large
from regserve.backends.local.paths import WorkerPaths
from regserve.backends.local.process import (
    ProcessHandle,
    WorkerProcess,
    describe_exit,
    forked_worker,
    spawn_worker,
    stop_pid,
    terminate,
)
from regserve.backends.local.supervision import RestartPolicy, supervise
from regserve.backends.local.worker_records import (
    WorkerRecord,
    is_running,
    read_record,
    remove_record,
)
from regserve.sandbox import Sandbox
from regserve.settings import Settings
from regserve.worker import wire
from regserve.worker.exits import EXIT_FORK_UNSAFE
from regserve.worker.text import log_safe

__all__ = ["WarmProcess", "WarmSpec"]

_log = logging.getLogger("regserve.supervisor")
_ASK_TIMEOUT = 10.0
_POLL = 0.05

Report = Callable[[str, str], None]
"""Told (event type, text) what the model's owner should know about the warm process."""


@dataclasses.dataclass(frozen=True)
class WarmSpec:
    """What a warm process runs: whose, in which interpreter, importing what."""

    model_name: str
    python: Path
    pythonpath: Path | None
    """Where the worker package comes from in a model's own environment (else None)."""
    env_key: str | None
    modules: tuple[str, ...]


class _Phase(enum.Enum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"
    """Lost, restarting after a backoff."""
    OFF = "off"
    """Disabled (not safe to fork, crashing again and again), stopped, or let go of."""


class _Control:
    """A connection to the warm process's control socket: one question at a time, in a thread."""

    def __init__(self, process: WorkerProcess, path: Path) -> None:
        self.process = process
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(_ASK_TIMEOUT)
        try:
            self._sock.connect(str(path))
        except OSError:
            self._sock.close()
            raise
        self._lock = threading.Lock()
        self._ids = iter(range(1, 1 << 62))
        self.lost = False

    @property
    def alive(self) -> bool:
        return not self.lost and self.process.returncode is None and is_running(self.process.record)

    async def ask(self, frame: Callable[[int], bytes], fd: int | None = None) -> wire.Reply | None:
        """One request and its REPLY (``fd`` sent with it); None (and closed) when lost."""
        return await asyncio.to_thread(self._ask, frame, fd)

    def _ask(self, frame: Callable[[int], bytes], fd: int | None) -> wire.Reply | None:
        with self._lock:
            if self.lost:
                return None
            request_id = next(self._ids)
            try:
                data = frame(request_id)
                if fd is None:
                    self._sock.sendall(data)
                else:
                    socket.send_fds(self._sock, [data], [fd])
                return self._reply(request_id)
            except (OSError, ValueError, EOFError):
                self._close()
                return None

    def _reply(self, request_id: int) -> wire.Reply:
        reader, frames = wire.FrameReader(), list[wire.Frame]()
        while not frames:
            data = self._sock.recv(65536)
            if not data:
                raise EOFError("the warm process closed the connection")
            frames += reader.feed(data)
        answer = frames[0]
        if (answer.request_id, answer.kind) != (request_id, wire.Kind.REPLY):
            raise EOFError("the warm process is out of step")
        return wire.decode_reply(answer.payload)

    def close(self) -> None:
        """Close it now, also while a question is in flight in a thread (never waits for it:
        the shutdown ends that question's wait, and its thread closes the socket)."""
        self.lost = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if self._lock.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._lock.release()

    def _close(self) -> None:
        self.lost = True
        self._sock.close()


async def _connected(process: WorkerProcess, path: Path) -> _Control:
    """A :class:`_Control` made in a thread; closed there when the wait for it is cancelled
    (a stop while connecting), not left to the garbage collector with its socket open."""
    attempt = asyncio.ensure_future(asyncio.to_thread(_Control, process, path))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        attempt.add_done_callback(_close_unclaimed)
        raise


def _close_unclaimed(attempt: asyncio.Future[_Control]) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().close()


class WarmProcess:
    """The warm process of one model in one environment."""

    def __init__(
        self,
        settings: Settings,
        spec: WarmSpec,
        sandbox: Sandbox,
        place: Callable[[int], None] | None,
        report: Report,
    ) -> None:
        self.spec = spec
        self._settings = settings
        self._sandbox = sandbox
        self._place = place
        self._report = report
        self.paths = WorkerPaths.for_warm(
            settings.resolved_data_dir(), spec.model_name, str(spec.python)
        )
        self._policy = RestartPolicy.of(settings)
        self._phase = _Phase.STARTING
        self._settled = asyncio.Event()
        """Set while it is not starting (up, down or off): a template request need not wait."""
        self._control: _Control | None = None
        self._process: WorkerProcess | None = None
        """The process last started or adopted (until it is connected it is nowhere else)."""
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.adopted = False
        """The running process was left by a previous regserve process."""

    @property
    def label(self) -> str:
        return f"the warm process of '{log_safe(self.spec.model_name)}' ({self.spec.python})"

    @property
    def pid(self) -> int | None:
        control = self._control
        return control.process.pid if control is not None and control.alive else None

    def start(self) -> None:
        """Start (or adopt) it in the background, and keep it running."""
        if self._task is None and self._phase is not _Phase.OFF:
            self._task = asyncio.create_task(
                supervise(_Supervised(self), self._policy, self._stopping), name=self.label
            )

    def place(self) -> None:
        """Put it under the model's current limits again (a cluster update moved them)."""
        pid = self.pid
        if pid is not None and self._place is not None:
            with contextlib.suppress(OSError):
                self._place(pid)

    async def fork_template(
        self, argv: list[str], paths: WorkerPaths, record: WorkerRecord
    ) -> WorkerProcess | None:
        """A template forked to run ``python -m regserve.worker *argv`` (its output in
        ``paths.log``, recorded in ``paths.pidfile`` from ``record``); None: start it cold."""
        control = await self._wait_up()
        if control is None:
            return None
        try:
            rotate_if_large(paths.log, self._settings.log_max_bytes)
            paths.socket.unlink(missing_ok=True)
            fd = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            _log.warning("%s: the version's log cannot be opened (%s)", self.label, exc)
            return None
        try:
            fork: wire.TemplateFork = {"argv": argv}
            answer = await control.ask(lambda rid: wire.encode_template_fork(rid, fork), fd)
        finally:
            os.close(fd)
        pid = answer.get("pid") if answer else None
        if not isinstance(pid, int):
            _log.warning("%s forked no template: %s", self.label, answer)
            return None
        return forked_worker(
            pid, paths, control.process.record, record, self._place_forked, self.exit_code
        )

    def _place_forked(self, pid: int) -> None:
        if self._place is not None:
            with contextlib.suppress(OSError):  # it is in the warm process's cgroup (the model's)
                self._place(pid)

    async def exit_code(self, pid: int) -> int | None:
        """How a template forked from it ended (None: unknown, or the warm process is gone)."""
        control = self._control
        if control is None or not control.alive:
            return None
        answer = await control.ask(lambda rid: wire.encode_exit(rid, {"pid": pid}))
        code = answer.get("code") if answer else None
        return code if isinstance(code, int) else None

    async def _wait_up(self) -> _Control | None:
        """The connection once it is up; waits while it is starting (at most the start
        timeout); None when it is off, lost, or restarting after a backoff."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._settled.wait(), self._settings.worker_start_timeout)
        control = self._control
        if self._phase is not _Phase.UP or control is None or not control.alive:
            return None
        return control

    async def stop(self) -> None:
        processes = {p for p in (self._process, self._control and self._control.process) if p}
        self.abandon()  # cancels its supervision, which would have stopped a starting one
        await asyncio.gather(*(terminate(process) for process in processes))
        remove_record(self.paths.pidfile)

    def abandon(self) -> None:
        """Let go of it, running, for the next regserve process to adopt."""
        self._set_phase(_Phase.OFF)
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
        if self._control is not None:
            self._control.close()

    # -- what supervision calls ------------------------------------------------------------------

    async def _launch(self) -> WorkerProcess:
        adopted = await self._adopt()
        self.adopted = adopted is not None
        if adopted is not None:
            self._process = adopted
            return adopted
        record = WorkerRecord(
            0,
            0,
            "",
            self.spec.model_name,
            "",
            env_key=self.spec.env_key,
            warm_protocol=wire.WARM_PROTOCOL,
        )
        self._process = await spawn_worker(
            str(self.spec.python),
            ["--warm", "--preload", ",".join(self.spec.modules)],
            self.paths,
            self.spec.pythonpath,
            self._settings.log_max_bytes,
            record,
            self._settings.orphan_timeout,
            self._sandbox,
            self._place,
        )
        note(self.paths.log, f"warm process started as pid {self._process.pid}")
        return self._process

    async def _adopt(self) -> WorkerProcess | None:
        """The warm process a previous regserve left, if it runs what this one would."""
        record = read_record(self.paths.pidfile)
        if record is None or not is_running(record):
            return None
        fits = (record.python, record.pythonpath, record.warm_protocol) == (
            str(self.spec.python),
            str(self.spec.pythonpath) if self.spec.pythonpath else None,
            wire.WARM_PROTOCOL,
        )
        if not fits:
            _log.info("not adopting %s pid %s: it runs another interpreter", self.label, record.pid)
            await asyncio.to_thread(stop_pid, record)
            remove_record(self.paths.pidfile)
            return None
        if self._place is not None:
            with contextlib.suppress(OSError):
                self._place(record.pid)
        _log.info("adopted %s, pid %s", self.label, record.pid)
        return WorkerProcess(record)

    async def _connect(self, process: WorkerProcess) -> bool:
        """Until its control socket answers a connection (it appears once it imported)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.worker_start_timeout
        socket_path = Path(process.record.socket)
        while process.returncode is None and loop.time() < deadline:
            with contextlib.suppress(OSError):
                self._control = await _connected(process, socket_path)
                return True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), _POLL)
        return False

    def _set_phase(self, phase: _Phase) -> None:
        if self._phase is not _Phase.OFF:  # off is for good
            self._phase = phase
        if self._phase is _Phase.STARTING:
            self._settled.clear()
        else:
            self._settled.set()

    def _disable(self, why: str) -> None:
        self._set_phase(_Phase.OFF)
        if self._stopping.is_set():  # stopped on purpose: nothing to report
            return
        text = f"Templates start cold, not forked from a warm process: {why}."
        _log.warning("%s: %s", self.label, text)
        note(self.paths.log, text)
        self._report("WARM_PROCESS_DISABLED", text)


class _Supervised:
    """The warm process as :func:`supervise` sees it."""

    def __init__(self, warm: WarmProcess) -> None:
        self._warm = warm
        self._lost = ""

    def turn(self) -> AbstractAsyncContextManager[object]:
        """No turn to wait for: one per model and environment; the first templates wait for
        it within their turns."""
        return contextlib.nullcontext()

    async def launch(self) -> ProcessHandle:
        self._warm._set_phase(_Phase.STARTING)
        return await self._warm._launch()

    async def wait_ready(self, process: ProcessHandle) -> bool:
        assert isinstance(process, WorkerProcess)
        return await self._warm._connect(process)

    async def serving(self, process: ProcessHandle, restarted: bool) -> None:
        warm = self._warm
        warm._set_phase(_Phase.UP)
        how = f" after {self._lost}" if self._lost else ""
        state = "was adopted" if warm.adopted else "is ready"
        text = (
            f"The warm process pid {process.pid} ({warm.spec.python}) {state}{how}: new "
            f"templates of this model are forked from it ({', '.join(warm.spec.modules)} "
            "imported once)."
        )
        self._lost = ""
        _log.info("%s", text)
        if not warm.adopted:  # adopted: nothing changed for the model's owner
            warm._report("WARM_PROCESS_STARTED", text)

    async def unready(self, process: ProcessHandle) -> bool:
        await terminate(process)
        if process.returncode == EXIT_FORK_UNSAFE:
            self._warm._disable(
                "its libraries are not safe to fork once imported (threads, CUDA, TensorFlow "
                "or JAX); the warm process's log says which"
            )
            return False
        self._warm._set_phase(_Phase.DOWN)
        return True  # counted as a crash: started again, with the backoff

    async def wait_exit(self, process: ProcessHandle) -> int:
        return await process.wait()

    async def explain(self, process: ProcessHandle, code: int) -> str:
        return f"the warm process pid {process.pid} {describe_exit(code)}"

    def charge(self, why: str) -> int | None:
        return None

    def restarting(self, why: str, delay: float, crashes: int) -> None:
        warm = self._warm
        warm._set_phase(_Phase.DOWN)
        if warm._control is not None:
            warm._control.close()
        self._lost = why if not delay else f"{why} (again; restarted after {delay:g} s)"
        _log.warning("%s; starting it again", why)
        note(warm.paths.log, f"{why}; starting it again")

    def give_up(self, why: str, crashes: int) -> None:
        self._warm._disable(f"{why}, {crashes} times in a row")

    def cannot_start(self, error: Exception) -> None:
        self._warm._disable(f"it could not be started: {error}")

    async def stopped_while_starting(self, process: ProcessHandle) -> None:
        return None  # let go of (kept for the next process) or stopped by WarmProcess.stop
