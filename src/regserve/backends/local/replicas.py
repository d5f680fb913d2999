"""ReplicaSet: the worker processes (replicas) of one served version, and how requests reach them.

- Each replica is its own ``python -m regserve.worker`` process with its own socket, supervised
  on its own: a crash restarts that replica with the usual backoff; ``max_restarts`` crashes in
  a row make that replica FAILED. The version is READY while at least one replica is.
- The set is the version's routing :class:`~regserve.router.Target`: a request goes to the
  ready replica with the fewest requests in flight (ties rotate); when that replica's
  connection dies before it answered (nothing has been sent to the caller yet), the request
  is sent once more to another ready replica. A request that timed out is not retried.
- :meth:`retire` hands the set's traffic to a successor (a blue-green cluster update): requests
  that still reach it go to the successor, and :meth:`drain` waits for those it already sent.
- With one replica the state messages and events are those of a plain worker; with more, they
  name the replica ("Replica 2: ...") and the state message counts them ("1 of 2 replicas
  ready; replica 2: ...").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from regserve.backends.base import VersionEvent, VersionListener, VersionSpec
from regserve.backends.local.client import WorkerClient
from regserve.backends.local.limits import ResourceLimits
from regserve.backends.local.logs import note, read_tail
from regserve.backends.local.paths import WorkerPaths
from regserve.backends.local.process import (
    UNKNOWN_EXIT,
    ProcessHandle,
    WorkerProcess,
    describe_exit,
    forked_worker,
    spawn_worker,
    terminate,
    wait_exit,
)
from regserve.backends.local.records import WorkerRecord
from regserve.backends.local.template import Template
from regserve.errors import RegServeError, UnavailableError
from regserve.settings import Settings
from regserve.worker import wire

__all__ = ["ReplicaSet"]

_log = logging.getLogger("regserve.supervisor")

LAUNCHING = "VERSION_STATE_LAUNCHING"
READY = "VERSION_STATE_READY"
FAILED = "VERSION_STATE_FAILED"


class _Replica:
    """One worker process of the version, with its connection and restart bookkeeping."""

    def __init__(self, index: int, spec: VersionSpec, paths: WorkerPaths) -> None:
        self.index = index
        self.paths = paths
        self.client = WorkerClient(
            str(paths.socket), f"Version {spec.version} of '{spec.model_name}'"
        )
        self.process: ProcessHandle | None = None
        """The worker: spawned here, or adopted from a previous regserve process."""
        self.state = LAUNCHING
        self.message = "Starting."
        self.inflight = 0
        self.crashed = False
        """Crashed at least once: its next READY is a restart."""
        self.forked = False
        """Its process was forked from the set's template (which knows its exit status)."""
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.returncode is None else None


class ReplicaSet:
    """The replicas of one version (one cluster generation of it)."""

    def __init__(
        self,
        settings: Settings,
        spec: VersionSpec,
        count: int,
        generation: int,
        worker_args: Callable[[], list[str]],
        listener: VersionListener,
        limits: ResourceLimits | None = None,
        fork: bool = False,
    ) -> None:
        self._settings = settings
        self._limits = limits
        """The node type's limits (limits/): workers go into the cluster's cgroup."""
        self.spec = spec
        self.generation = generation
        self._worker_args = worker_args
        self.listener = listener
        """Where state changes go; a set being prepared beside a running one keeps quiet."""
        data_dir = settings.resolved_data_dir()
        self.replicas = [
            _Replica(i, spec, WorkerPaths.for_version(
                data_dir, spec.model_name, spec.version, i, generation))
            for i in range(1, count + 1)
        ]  # fmt: skip
        self._ready: tuple[_Replica, ...] = ()
        self._turn = 0
        self.inflight = 0
        self._drained: asyncio.Event | None = None
        """Set when the last request in flight is answered, once someone waits for that."""
        self.successor: ReplicaSet | None = None
        self.state = LAUNCHING
        self._abandoned = False
        """Let go of for the next process to adopt: its workers must keep running."""
        self._template = (
            Template(WorkerPaths.for_template(data_dir, spec.model_name, spec.version, generation),
                     self.label, self._launch_template, self._template_fits,
                     settings.worker_start_timeout, self._place(), self._emit)
            if fork else None
        )  # fmt: skip
        """Forks the replicas from one loaded model (worker/template.py); None: fresh ones."""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        log = self.replicas[0].paths.log
        log.parent.mkdir(parents=True, exist_ok=True)
        adopted = any(replica.process is not None for replica in self.replicas)
        if adopted and self._template is not None:
            self._template.warm()  # a crash of an adopted replica is a fork away too
        for replica in self.replicas:
            replica.paths.socket.parent.mkdir(parents=True, exist_ok=True)
            replica.task = asyncio.create_task(
                self._supervise(replica),
                name=f"supervise {self.spec.model_name} v{self.spec.version} r{replica.index}",
            )

    def adopt(self, replica_index: int, process: ProcessHandle, client: WorkerClient) -> None:
        """Serve replica ``replica_index`` from a running worker a previous process left
        (``client`` is already connected to it); call before :meth:`start`."""
        replica = self.replicas[replica_index - 1]
        replica.client.close()
        replica.client = client
        replica.process = process
        replica.crashed = True  # its next start is a restart
        # READY at once, quietly: the controller records the adoption (WORKER_ADOPTED).
        replica.state, replica.message = READY, "Serving."
        self._ready = tuple(r for r in self.replicas if r.state == READY)
        self.state, _ = self.summary()

    def abandon(self) -> None:
        """Stop supervising and let go of the connections, leaving the workers running (with
        their records) for the next regserve process to adopt."""
        self._abandoned = True
        for replica in self.replicas:
            replica.stopping.set()
            if replica.task is not None:
                replica.task.cancel()
            replica.client.close()
        if self._template is not None:
            self._template.abandon()

    async def stop(self) -> None:
        """SIGTERM every replica (each finishes its in-flight requests) and forget them."""
        for replica in self.replicas:
            replica.stopping.set()
        await asyncio.gather(*(terminate(r.process) for r in self.replicas))
        if self._template is not None:
            await self._template.stop()
        for replica in self.replicas:
            if replica.task is not None:
                await _cancelled(replica.task)
            replica.client.close()
            for path in (replica.paths.socket, replica.paths.pidfile):
                path.unlink(missing_ok=True)

    def retire(self, successor: ReplicaSet) -> None:
        """Send the requests that still reach this set to ``successor`` from now on."""
        self.successor = successor

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until the requests this set sent are answered."""
        if not self.inflight:
            return
        self._drained = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drained.wait(), timeout)

    # -- what the controller and the router see ------------------------------------------------

    @property
    def label(self) -> str:
        return f"version {self.spec.version} of '{self.spec.model_name}'"

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    def pids(self) -> list[int]:
        return [pid for r in self.replicas if (pid := r.pid) is not None]

    def summary(self) -> tuple[str, str]:
        """The version's (state, message) from its replicas'."""
        if len(self.replicas) == 1:
            only = self.replicas[0]
            return only.state, only.message
        ready = len(self._ready)
        if ready:
            state = READY
        elif all(r.state == FAILED for r in self.replicas):
            state = FAILED
        else:
            state = LAUNCHING
        parts = [f"{ready} of {len(self.replicas)} replicas ready"]
        parts += [f"replica {r.index}: {r.message}" for r in self.replicas if r.state != READY]
        return state, "; ".join(parts) + ("" if parts[-1].endswith(".") else ".")

    def failure(self) -> str | None:
        """Why the set cannot become fully READY (a replica FAILED), or None."""
        failed = [r for r in self.replicas if r.state == FAILED]
        if not failed:
            return None
        return "; ".join(f"replica {r.index}: {r.message}" for r in failed)

    def sockets(self) -> list[str]:
        """Every replica's socket path (what another gateway on this machine connects to)."""
        return [str(r.paths.socket) for r in self.replicas]

    def all_ready(self) -> bool:
        return len(self._ready) == len(self.replicas)

    # -- the Target ----------------------------------------------------------------------------

    async def request(self, content_type: str | None, body: bytes, timeout: float) -> wire.Response:
        successor = self.successor
        if successor is not None:
            return await successor.request(content_type, body, timeout)
        ready = self._ready
        if not ready:
            raise UnavailableError(
                f"No replica of {self.label} is ready; retry shortly.", retry_after=2
            )
        replica = ready[0] if len(ready) == 1 else self._pick(ready)
        self.inflight += 1
        replica.inflight += 1
        try:
            return await replica.client.request(content_type, body, timeout)
        except UnavailableError:
            # The connection died before the answer: nothing reached the caller yet.
            other = self._other(replica)
            if other is None:
                raise
            return await self._retry(other, content_type, body, timeout)
        finally:
            self.inflight -= 1
            replica.inflight -= 1
            if self._drained is not None and not self.inflight:
                self._drained.set()

    def _pick(self, ready: tuple[_Replica, ...]) -> _Replica:
        """The ready replica with the fewest requests in flight; ties take turns."""
        count = len(ready)
        self._turn = start = (self._turn + 1) % count
        best = ready[start]
        for step in range(1, count):
            candidate = ready[(start + step) % count]
            if candidate.inflight < best.inflight:
                best = candidate
        return best

    def _other(self, failed: _Replica) -> _Replica | None:
        others = [r for r in self._ready if r is not failed and r.pid is not None]
        return min(others, key=lambda r: r.inflight) if others else None

    async def _retry(
        self, replica: _Replica, content_type: str | None, body: bytes, timeout: float
    ) -> wire.Response:
        _log.info("retrying a request of %s on replica %s", self.label, replica.index)
        replica.inflight += 1
        try:
            return await replica.client.request(content_type, body, timeout)
        finally:
            replica.inflight -= 1

    async def ping(self, timeout: float = 2.0) -> dict[str, Any]:
        """The first ready replica's PONG (for ``/metrics``)."""
        for replica in self._ready:
            return await replica.client.ping(timeout)
        raise UnavailableError(f"No replica of {self.label} is ready.")

    # -- supervision ---------------------------------------------------------------------------

    def _prefix(self, replica: _Replica) -> str:
        return f"Replica {replica.index}: " if len(self.replicas) > 1 else ""

    def _set(
        self, replica: _Replica, state: str, message: str, event_type: str = "", text: str = ""
    ) -> None:
        replica.state, replica.message = state, message
        self._ready = tuple(r for r in self.replicas if r.state == READY)
        self._emit(event_type, text, replica.pid)

    def _emit(self, event_type: str = "", text: str = "", pid: int | None = None) -> None:
        """Tell the listener the set's state, with an event (``event_type``, ``text``) if any;
        the pid named is a READY replica's, else ``pid``."""
        self.state, summary = self.summary()
        pid = next((r.pid for r in self._ready), None) or pid
        self.listener(
            VersionEvent(
                self.spec.model_name, self.spec.version, self.state, summary, event_type, text, pid
            )
        )

    async def _supervise(self, replica: _Replica) -> None:
        failures = 0
        adopted = replica.process  # adopted (see adopt): watch it, restart it like any other
        while not replica.stopping.is_set():
            if adopted is not None:
                process, adopted = adopted, None
            else:
                attempt = f" (attempt {failures + 1})" if failures else ""
                self._set(replica, LAUNCHING, f"Loading the model{attempt}.")
                try:
                    process = await self._spawn(replica)
                except (OSError, RegServeError) as exc:
                    self._fail(replica, f"Could not start the worker: {exc}")
                    return
                ready = await self._wait_ready(replica, process)
                if replica.stopping.is_set():  # stopped while it started: nobody else stops it
                    if not self._abandoned:
                        await terminate(process)
                    return
                if ready:
                    self._announce_ready(replica, process.pid)
                    failures = 0
            code = await wait_exit(process, replica.client.ping, self._settings.orphan_timeout)
            if replica.stopping.is_set():
                return
            if code == UNKNOWN_EXIT and replica.forked and self._template is not None:
                code = await self._template.exit_code(process.pid) or code
            failures += 1
            tail = read_tail(replica.paths.log, max_lines=15)  # was it killed for memory?
            oom = (self._limits.explain_exit(self.spec.model_name, process.pid, code, tail)
                   if self._limits is not None else None)  # fmt: skip
            why = f"{self._prefix(replica)}Worker pid {process.pid} {oom or describe_exit(code)}"
            if failures >= self._settings.max_restarts:
                tail = read_tail(replica.paths.log, max_lines=15)
                self._fail(replica, f"{why}; it crashed {failures} times in a row. "
                                    f"Last log lines:\n{tail}")  # fmt: skip
                return
            delay = min(
                self._settings.restart_backoff_base * 2 ** (failures - 1),
                self._settings.restart_backoff_max,
            )
            allowed = self._settings.max_restarts - 1
            text = f"{why}; restarting in {delay:g} s (restart {failures} of {allowed})."
            self._set(replica, LAUNCHING, text, "WORKER_CRASHED", text)
            replica.crashed = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(replica.stopping.wait(), delay)

    def _announce_ready(self, replica: _Replica, pid: int) -> None:
        prefix = self._prefix(replica)
        if replica.crashed:
            text = f"{prefix}Worker restarted (pid {pid}) and is serving again."
            self._set(replica, READY, "Serving.", "WORKER_RESTARTED", text)
        elif not self._ready:
            text = f"Version {self.spec.version} is ready (worker pid {pid})."
            if len(self.replicas) > 1:
                text = f"Version {self.spec.version} is ready ({prefix.lower()}pid {pid})."
            self._set(replica, READY, "Serving.", "VERSION_READY", text)
        else:
            text = f"{prefix}Serving (worker pid {pid})."
            self._set(replica, READY, "Serving.", "REPLICA_READY", text)

    def _fail(self, replica: _Replica, message: str) -> None:
        others_serve = any(r is not replica and r.state != FAILED for r in self.replicas)
        kind = "REPLICA_FAILED" if others_serve else "VERSION_FAILED"
        self._set(replica, FAILED, message, kind, message)

    async def _spawn(self, replica: _Replica) -> ProcessHandle:
        spec = self.spec
        record = WorkerRecord(0, 0, "", spec.model_name, "", env_key=spec.env_key,
                              version=spec.version, model_path=str(spec.model_path),
                              replica=replica.index, generation=self.generation)  # fmt: skip
        process = await self._fork(replica, record)
        replica.forked = process is not None
        if process is None:
            process = await self._start_worker(replica.paths, record)
        replica.process = process
        how = "forked from the template" if replica.forked else "started"
        _log.info("%s worker pid %s for replica %s of %s (generation %s)",
                  how, process.pid, replica.index, self.label, self.generation)  # fmt: skip
        if len(self.replicas) > 1 or self.generation:
            note(replica.paths.log, f"replica {replica.index} of {len(self.replicas)} {how} "
                 f"as pid {process.pid} (cluster generation {self.generation})")  # fmt: skip
        return process

    async def _fork(self, replica: _Replica, record: WorkerRecord) -> WorkerProcess | None:
        """The replica forked from the set's template, or None (start a fresh worker)."""
        template = self._template
        if template is None:
            return None
        orphan_timeout = self._settings.orphan_timeout
        pid = await template.fork(replica.paths.socket, replica.paths.log, orphan_timeout)
        running = template.process
        if pid is None or running is None:
            return None
        return forked_worker(pid, replica.paths, running.record, record, self._place())

    async def _start_worker(self, paths: WorkerPaths, record: WorkerRecord | None,
                            extra: tuple[str, ...] = ()) -> WorkerProcess:  # fmt: skip
        """``python -m regserve.worker`` for this version (``--template`` in ``extra``)."""
        spec = self.spec
        args = ["--model-path", str(spec.model_path), "--name", spec.model_name,
                "--version", spec.version, *self._worker_args(), *extra]  # fmt: skip
        return await spawn_worker(
            str(spec.python or sys.executable),
            args,
            paths,
            spec.worker_path if spec.python is not None else None,
            self._settings.log_max_bytes,
            record,
            self._settings.orphan_timeout,
            self._place(),
        )

    async def _launch_template(self, paths: WorkerPaths) -> WorkerProcess:
        spec = self.spec
        record = WorkerRecord(0, 0, "", spec.model_name, "", env_key=spec.env_key,
                              version=spec.version, model_path=str(spec.model_path),
                              generation=self.generation)  # fmt: skip
        process = await self._start_worker(paths, record, ("--template",))
        note(paths.log, f"template worker started as pid {process.pid} "
             f"(cluster generation {self.generation}): replicas are forked from it")  # fmt: skip
        return process

    def _template_fits(self, record: WorkerRecord) -> bool:
        spec = self.spec
        python = str(spec.python or sys.executable)
        return (record.model_path, record.python) == (str(spec.model_path), python)

    def _place(self) -> Callable[[int], None] | None:
        if self._limits is None:
            return None
        return partial(self._limits.place, self.spec.model_name)

    async def _wait_ready(self, replica: _Replica, process: ProcessHandle) -> bool:
        """Poll the worker until it answers a ping; False when it exits or takes too long."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.worker_start_timeout
        while process.returncode is None and not replica.stopping.is_set():
            if replica.paths.socket.exists():
                with contextlib.suppress(RegServeError, OSError, ValueError):
                    await replica.client.ping(timeout=5.0)
                    return True
            if loop.time() > deadline:
                _log.warning("replica %s of %s did not become ready in time; killing it",
                             replica.index, self.label)  # fmt: skip
                process.kill()
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), 0.05)
        return False


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for its end; a cancellation that ``asyncio.wait_for`` swallowed
    (Python 3.11, when its inner future completes at the same moment) is repeated."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()
