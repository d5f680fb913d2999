"""SharedWorker: one worker process serving several versions of one model in one environment.

The process starts with no model (``python -m regserve.worker --shared``); versions are loaded
into it with LOAD frames, one at a time, while the others keep serving, and unloaded with
UNLOAD once their routes are withdrawn. Each version reaches the process over its own
connection bound to it (:class:`WorkerClient` with ``bind``).

- A version whose model fails to load becomes FAILED with the loader's message; the others
  are untouched.
- When the process dies, every version in it goes back to LAUNCHING (``WORKER_CRASHED``); the
  process is restarted with backoff and every version is loaded again (``WORKER_RESTARTED``).
  A death while a version was loading counts against that version: after
  ``max_restarts`` such deaths it is FAILED and no longer loaded; the others carry on.
  ``max_restarts`` deaths in a row before the process even answers fail them all.
- The process's output goes to ``logs/<model>/shared-<env>.log``; each version's own log
  names that file, and the version's logs read through the API include its tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from regserve.backends.base import VersionEvent, VersionListener, VersionSpec
from regserve.backends.inputs import input_limits
from regserve.backends.local.client import WorkerClient
from regserve.backends.local.limits import ResourceLimits
from regserve.backends.local.logs import note, read_tail
from regserve.backends.local.paths import WorkerPaths
from regserve.backends.local.process import (
    ProcessHandle,
    WorkerProcess,
    describe_exit,
    spawn_worker,
    terminate,
    wait_exit,
)
from regserve.backends.local.supervision import RestartPolicy, supervise, wait_until_ready
from regserve.backends.local.worker_records import WorkerRecord
from regserve.backends.options import BatchSettings
from regserve.errors import DeadlineExceededError, RegServeError
from regserve.sandbox import Sandbox
from regserve.settings import Settings
from regserve.states import VersionState
from regserve.worker import wire
from regserve.worker.text import log_safe

__all__ = ["SharedWorker"]

_log = logging.getLogger("regserve.supervisor")

_UNLOAD_WAIT = 30.0


@dataclass(eq=False)
class _Member:
    spec: VersionSpec
    log: Path
    batching: Callable[[], BatchSettings]
    """The model's batching settings now (read at each load, as a one-version worker's
    are at each start)."""
    client: WorkerClient
    state: VersionState = VersionState.LAUNCHING
    loaded_in: int | None = None
    """The pid of the process the model is loaded in."""
    load_deaths: int = 0
    served: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def version(self) -> str:
        return self.spec.version


class SharedWorker:
    """The shared process of one (model, environment) and the versions it hosts."""

    def __init__(
        self,
        settings: Settings,
        paths: WorkerPaths,
        first: VersionSpec,
        environment: str,
        listener: VersionListener,
        limits: ResourceLimits | None = None,
        *,
        sandbox: Sandbox,
    ) -> None:
        self._settings = settings
        self._limits = limits  # node type limits (backends/local/limits)
        self._sandbox = sandbox
        """The model's user, environment and limits (regserve.sandbox)."""
        self.paths = paths
        self.environment = environment
        self._model = first.model_name
        self._python = str(first.python) if first.python is not None else None
        self._pythonpath = first.worker_path if first.python is not None else None
        self._listener = listener
        self._members: dict[str, _Member] = {}
        self._control = WorkerClient(str(paths.socket), f"The shared worker of '{self._model}'")
        self._process: WorkerProcess | None = None
        self._up = False
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._died_loading: _Member | None = None

    # -- membership (called by LocalBackend) -----------------------------------------------------

    def add(self, spec: VersionSpec, log: Path, batching: Callable[[], BatchSettings]) -> None:
        label = f"Version {spec.version} of '{spec.model_name}'"
        client = WorkerClient(str(self.paths.socket), label, bind=spec.version)
        member = self._members[spec.version] = _Member(spec, log, batching, client)
        note(log, f"served by the shared worker of this model; its output: {self.paths.log}")
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.create_task(self._supervise(), name=f"shared {self._model}")
        elif self._up:
            self._emit(
                member, VersionState.LAUNCHING, "Waiting to load the model in the shared worker."
            )
            task = asyncio.create_task(self._load(member))
            member.tasks.add(task)
            task.add_done_callback(member.tasks.discard)

    async def remove(self, version: str) -> None:
        """Unload a version (after its in-flight requests); stop the process with the last."""
        member = self._members.pop(version, None)
        if member is None:
            return
        for task in list(member.tasks):
            task.cancel()
        if not self._members:  # the last one: SIGTERM lets its in-flight requests finish
            await self.close()
        else:
            async with self._lock:
                # Also when it is not known to be loaded: a cancelled load may still finish
                # there, and an UNLOAD first makes the worker drop it when it does.
                if self._alive():
                    with contextlib.suppress(RegServeError, OSError):
                        await self._control.unload(version, _UNLOAD_WAIT)
                    self._record_versions()
        member.client.close()  # its in-flight requests have been answered

    async def close(self, keep_worker: bool = False) -> None:
        """Stop the process; with ``keep_worker`` leave it running (with its record) for the
        next regserve process (which does not adopt shared workers yet: it stops them)."""
        self._stopping.set()
        if not keep_worker:
            await terminate(self._process)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._control.close()
        for member in self._members.values():
            member.client.close()
        if not keep_worker:
            for path in (self.paths.socket, self.paths.pidfile):
                path.unlink(missing_ok=True)

    @property
    def empty(self) -> bool:
        return not self._members

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._alive() and self._process else None

    def versions(self) -> set[str]:
        return set(self._members)

    def target(self, version: str) -> WorkerClient | None:
        member = self._members.get(version)
        return member.client if member is not None and member.state == VersionState.READY else None

    def read_logs(self, version: str, own: str) -> str:
        shared = read_tail(self.paths.log, max_lines=2000, max_bytes=1024 * 1024)
        header = f"--- the shared worker's log ({self.paths.log.name}, versions "
        header += ", ".join(sorted(self._members, key=int)) + ") ---"
        return "\n".join(part for part in (own, header, shared) if part)

    # -- supervision ---------------------------------------------------------------------------

    def _alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def _live(self) -> list[_Member]:
        return [m for m in self._members.values() if m.state != VersionState.FAILED]

    def _emit(
        self, member: _Member, state: VersionState, message: str, kind: str = "", text: str = ""
    ) -> None:
        member.state = state
        self._listener(
            VersionEvent(self._model, member.version, state, message, kind, text, self.pid)
        )

    async def _supervise(self) -> None:
        await supervise(_Supervised(self), RestartPolicy.of(self._settings), self._stopping)

    def _explain_exit(self, pid: int, code: int | None) -> str:
        """How the process ended; named by the cluster's limits when they killed it."""
        tail = read_tail(self.paths.log, max_lines=15)
        oom = self._limits.explain_exit(self._model, pid, code, tail) if self._limits else None
        return oom or describe_exit(code)

    def _count_death(self, why: str) -> int | None:
        """Blame a death during a load on that version; its count of such deaths, or None."""
        member, self._died_loading = self._died_loading, None
        if member is None or member.version not in self._members:
            return None
        member.load_deaths += 1
        if member.load_deaths >= self._settings.max_restarts:
            message = (
                f"{why} while loading this version, {member.load_deaths} times; "
                "it is no longer loaded (the other versions keep serving)."
            )
            self._emit(member, VersionState.FAILED, message, "VERSION_FAILED", message)
        return member.load_deaths

    def _record_versions(self) -> None:
        """Keep the record's list of loaded versions (version -> model path) true."""
        if self._alive() and self._process is not None:
            loaded = {
                m.version: str(m.spec.model_path)
                for m in self._members.values()
                if m.loaded_in == self._process.pid
            }
            with contextlib.suppress(OSError):
                self._process.update_record(self.paths.pidfile, versions=loaded)

    def _fail_all(self, message: str) -> None:
        for member in self._live():
            self._emit(member, VersionState.FAILED, message, "VERSION_FAILED", message)

    async def _spawn(self) -> WorkerProcess:
        for member in self._live():
            self._emit(member, VersionState.LAUNCHING, "Starting the shared worker.")
        python = self._python or sys.executable
        args = ["--shared", "--name", self._model]
        self.paths.log.parent.mkdir(parents=True, exist_ok=True)
        place = partial(self._limits.place, self._model) if self._limits else None
        record = WorkerRecord(0, 0, "", self._model, "", shared=True)
        process = await spawn_worker(
            python,
            args,
            self.paths,
            self._pythonpath,
            self._settings.log_max_bytes,
            record,
            self._settings.orphan_timeout,
            self._sandbox,
            place,
        )
        self._process = process
        _log.info("started shared worker pid %s for '%s'", process.pid, log_safe(self._model))
        return process

    async def _load(self, member: _Member) -> None:
        async with self._lock:
            pid = self.pid
            if (
                not self._up
                or pid is None
                or member.loaded_in == pid
                or member.state == VersionState.FAILED
                or self._members.get(member.version) is not member
            ):
                return
            self._emit(
                member,
                VersionState.LAUNCHING,
                f"Loading the model in the shared worker (pid {pid}).",
            )
            reply = await self._send_load(member)
        if reply is None:
            return  # the process died; the supervisor restarts it
        if not reply.get("ok"):
            message = f"The model could not be loaded: {reply.get('error')}"
            self._emit(member, VersionState.FAILED, message, "VERSION_FAILED", message)
            return
        try:
            await member.client.ping(timeout=5.0)
        except (RegServeError, OSError, ValueError):
            return
        member.loaded_in = pid
        self._record_versions()
        if member.served:
            text = f"Shared worker restarted (pid {pid}); version {member.version} serves again."
            self._emit(member, VersionState.READY, "Serving.", "WORKER_RESTARTED", text)
        else:
            text = f"Version {member.version} is ready (shared worker pid {pid})."
            self._emit(member, VersionState.READY, "Serving.", "VERSION_READY", text)
        member.served = True

    async def _send_load(self, member: _Member) -> wire.Reply | None:
        """LOAD the member; its REPLY, or None when the process died meanwhile."""
        batching = member.batching()
        load: wire.Load = {
            "version": member.version,
            "model_path": str(member.spec.model_path),
            "batching": batching.mode,
            "max_batch_size": batching.max_batch_size,
            "max_batch_wait_ms": batching.max_batch_wait_ms,
            "limits": input_limits(self._settings).to_json(),
        }
        timeout = self._settings.worker_start_timeout
        try:
            return await self._control.load(load, timeout)
        except DeadlineExceededError:
            with contextlib.suppress(RegServeError, OSError):  # drop it if it ever loads
                await self._control.unload(member.version, 5.0)
            return {"ok": False, "error": f"the model did not load within {timeout:g} s"}
        except (RegServeError, OSError):
            if self._died_loading is None:  # later loads fail only because it is gone
                self._died_loading = member
            return None


class _Supervised:
    """A shared worker's process, as :func:`~regserve.backends.local.supervision.supervise`
    sees it."""

    def __init__(self, worker: SharedWorker) -> None:
        self._worker = worker

    def turn(self) -> AbstractAsyncContextManager[object]:
        """No turn to wait for (not bounded yet): one process per model and environment."""
        return contextlib.nullcontext()

    async def launch(self) -> ProcessHandle:
        return await self._worker._spawn()

    async def wait_ready(self, process: ProcessHandle) -> bool:
        worker = self._worker
        ready = await wait_until_ready(
            process,
            worker.paths.socket,
            partial(worker._control.ping, timeout=5.0),
            worker._stopping,
            worker._settings.worker_start_timeout,
        )
        if not ready and process.returncode is None and not worker._stopping.is_set():
            _log.warning(
                "the shared worker of '%s' did not answer in time", log_safe(worker._model)
            )
        return ready

    async def serving(self, process: ProcessHandle, restarted: bool) -> None:
        worker = self._worker
        worker._up = True
        for member in worker._live():
            await worker._load(member)

    async def unready(self, process: ProcessHandle) -> bool:
        return True  # counted as a crash

    async def wait_exit(self, process: ProcessHandle) -> int:
        worker = self._worker
        code = await wait_exit(process, worker._control.ping, worker._settings.orphan_timeout)
        worker._up = False
        return code

    async def explain(self, process: ProcessHandle, code: int) -> str:
        return f"Shared worker pid {process.pid} {self._worker._explain_exit(process.pid, code)}"

    def charge(self, why: str) -> int | None:
        return self._worker._count_death(why)

    def restarting(self, why: str, delay: float, crashes: int) -> None:
        worker = self._worker
        when = f"in {delay:g} s" if delay else "now"
        for member in worker._live():
            member.loaded_in = None
            text = f"{why}; restarting it {when}."
            worker._emit(member, VersionState.LAUNCHING, text, "WORKER_CRASHED", text)
        if not worker._live():  # every version it hosted failed: nothing to restart it for
            worker._stopping.set()

    def give_up(self, why: str, crashes: int) -> None:
        tail = read_tail(self._worker.paths.log, max_lines=15)
        self._worker._fail_all(
            f"{why}; it crashed {crashes} times in a row. Last log lines:\n{tail}"
        )

    def cannot_start(self, error: Exception) -> None:
        self._worker._fail_all(f"Could not start the shared worker: {error}")

    async def stopped_while_starting(self, process: ProcessHandle) -> None:
        return None  # close() stops the process (it left it, keep_worker, on purpose)
