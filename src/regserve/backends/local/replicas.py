"""ReplicaSet: the worker processes (replicas) of one served version, and how requests reach them.

- Each replica is its own ``python -m regserve.worker`` process with its own socket, supervised
  on its own: a crash restarts that replica with the usual backoff; ``max_restarts`` crashes in
  a row make that replica FAILED. The version is READY while at least one replica is.
- The set is the version's routing :class:`~regserve.router.Target`: a request goes to the
  ready replica with the fewest requests in flight (ties rotate). When that replica's
  connection dies before it answered (nothing has been sent to the caller yet), the gateway
  sends the request once more (to another ready replica, or this one restarted:
  :mod:`regserve.gateway.dispatch`). A request that timed out is not sent again.
- :meth:`retire` hands the set's traffic to a successor (a blue-green cluster update): requests
  that still reach it go to the successor, and :meth:`drain` waits for those it already sent.
- With one replica the state messages and events are those of a plain worker; with more, they
  name the replica ("Replica 2: ...") and the state message counts them ("1 of 2 replicas
  ready; replica 2: ...").
- A set with no request for its idle timeout stops its workers and template and stays the
  version's READY target; its next request starts them again and waits for them
  (:mod:`regserve.backends.local.idle`: ``VERSION_IDLE``, ``VERSION_WOKEN``). The memory
  budget unloads a set the same way (:mod:`regserve.backends.local.memory_budget`:
  ``VERSION_EVICTED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial

from regserve.backends.base import VersionEvent, VersionListener, VersionSpec
from regserve.backends.local.client import WorkerClient
from regserve.backends.local.idle import (
    BUDGET_MESSAGE,
    IDLE_MESSAGE,
    WAKING_MESSAGE,
    IdleClock,
    IdleReason,
)
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
    worker_argv,
)
from regserve.backends.local.start_queue import StartPriority, StartQueue, Turn, Urgency
from regserve.backends.local.supervision import RestartPolicy, supervise, wait_until_ready
from regserve.backends.local.template import Template
from regserve.backends.local.warm import WarmProcess
from regserve.backends.local.worker_records import WorkerRecord
from regserve.errors import UnavailableError
from regserve.sandbox import Sandbox
from regserve.settings import Settings
from regserve.states import VersionState
from regserve.worker import wire
from regserve.worker.text import log_safe

__all__ = ["ReplicaSet"]

_log = logging.getLogger("regserve.supervisor")


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
        self.state = VersionState.LAUNCHING
        self.message = "Starting."
        self.inflight = 0
        self.crashed = False
        """Crashed at least once: its next READY is a restart."""
        self.served = False
        """It served at least once: a restart of it goes first in the start queue."""
        self.forked = False
        """Its process was forked from the set's template (which knows its exit status)."""
        self.replaced = ""
        """Why its worker was killed on purpose (it overran its deadlines), until it is told."""
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
        *,
        sandbox: Sandbox,
        warm: WarmProcess | None = None,
        starts: StartQueue | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self._settings = settings
        self._starts = starts
        """The backend's start queue: a start that loads the model waits for a turn there."""
        self._one_start = asyncio.Lock()
        """While no template runs, the set's replicas take their turns one after another:
        the first brings the template up, the others then fork from it, turn-free."""
        self._policy = RestartPolicy.of(settings)
        self._sandbox = sandbox
        """The model's user, environment and limits (regserve.sandbox)."""
        self._limits = limits
        """The node type's limits (limits/): workers go into the cluster's cgroup."""
        self._warm = warm
        """The model's warm process for this environment: the template is forked from it."""
        self.spec = spec
        self.generation = generation
        self._worker_args = worker_args
        self.listener = listener
        """Where state changes go; a set being prepared beside a running one keeps quiet."""
        data_dir = settings.resolved_data_dir()
        self.replicas = [
            _Replica(
                i,
                spec,
                WorkerPaths.for_version(data_dir, spec.model_name, spec.version, i, generation),
            )
            for i in range(1, count + 1)
        ]
        self._ready: tuple[_Replica, ...] = ()
        self._turn = 0
        self.inflight = 0
        self._drained: asyncio.Event | None = None
        """Set when the last request in flight is answered, once someone waits for that."""
        self.successor: ReplicaSet | None = None
        self.state = VersionState.LAUNCHING
        self._abandoned = False
        """Let go of for the next process to adopt: its workers must keep running."""
        self._watchdog: asyncio.Task[None] | None = None
        """Replaces a worker that overruns its requests' deadlines (:meth:`_watch_overruns`)."""
        self._template = self._new_template() if fork else None
        """Forks the replicas from one loaded model (worker/template.py); None: fresh ones."""
        self._clock = IdleClock(idle_timeout)
        self._idler: asyncio.Task[None] | None = None
        """Stops the workers once the set has been idle for its timeout (:meth:`_sleep`)."""
        self._asleep = False
        """Its workers were stopped for idleness (and it is not serving again yet)."""
        self._idle_reason = IdleReason.IDLE_TIMEOUT
        """Why they were (while ``_asleep``)."""
        self._loaded_at: float | None = None
        """When a replica last became ready (``time.monotonic``): the budget's grace."""
        self._settled = asyncio.Event()
        self._settled.set()
        """Cleared while the workers are being stopped for idleness."""
        self._waking: asyncio.Task[None] | None = None
        self._woke_at: float | None = None
        """When the wake in progress began (``time.monotonic``)."""
        self._stirred: asyncio.Event | None = None
        """Set at the next change of a replica's state (requests waiting for a wake)."""
        self._closed = False
        """Stopped or let go of: requests waiting for a wake stop waiting."""

    def _new_template(self) -> Template:
        data_dir = self._settings.resolved_data_dir()
        spec = self.spec
        return Template(
            WorkerPaths.for_template(data_dir, spec.model_name, spec.version, self.generation),
            self.label,
            self._launch_template,
            self._template_fits,
            self._settings.worker_start_timeout,
            self._place(),
            self._emit,
            self._policy,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        log = self.replicas[0].paths.log
        log.parent.mkdir(parents=True, exist_ok=True)
        adopted = any(replica.process is not None for replica in self.replicas)
        if adopted and self._template is not None:
            self._template.warm()  # a crash of an adopted replica is a fork away too
        for replica in self.replicas:
            replica.task = asyncio.create_task(
                self._supervise(replica),
                name=f"supervise {self.spec.model_name} v{self.spec.version} r{replica.index}",
            )
        if self._settings.overrun_grace > 0:
            self._watchdog = asyncio.create_task(
                self._watch_overruns(), name=f"overruns {self.label}"
            )
        if self._clock.timeout is not None:
            self._idler = asyncio.create_task(self._watch_idle(), name=f"idle {self.label}")

    def adopt(self, replica_index: int, process: ProcessHandle, client: WorkerClient) -> None:
        """Serve replica ``replica_index`` from a running worker a previous process left
        (``client`` is already connected to it); call before :meth:`start`."""
        replica = self.replicas[replica_index - 1]
        replica.client.close()
        replica.client = client
        replica.process = process
        replica.crashed = True  # its next start is a restart
        replica.served = True
        # READY at once, quietly: the controller records the adoption (WORKER_ADOPTED).
        replica.state, replica.message = VersionState.READY, "Serving."
        self._ready = tuple(r for r in self.replicas if r.state == VersionState.READY)
        self.state, _ = self.summary()
        self._loaded_at = time.monotonic()  # the memory budget's grace counts from now

    def abandon(self) -> None:
        """Stop supervising and let go of the connections, leaving the workers running (with
        their records) for the next regserve process to adopt."""
        self._abandoned = self._closed = True
        self._stir()
        for task in (self._watchdog, self._idler, self._waking):
            if task is not None:
                task.cancel()
        for replica in self.replicas:
            replica.stopping.set()
            if replica.task is not None:
                replica.task.cancel()
            replica.client.close()
        if self._template is not None:
            self._template.abandon()

    async def stop(self) -> None:
        """SIGTERM every replica (each finishes its in-flight requests) and forget them."""
        self._closed = True
        self._stir()
        await self._settled.wait()  # workers being stopped for idleness: stopped first
        tasks = [t for t in (self._watchdog, self._idler, self._waking) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            await _cancelled(task)
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
        self._stir()  # requests waiting for a wake go to it

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
        """It answers requests: a replica is ready, or it is idle (a request wakes it)."""
        return bool(self._ready) or (self._asleep and self.state == VersionState.READY)

    @property
    def idle(self) -> bool:
        """Its workers were stopped for idleness (or are starting again for a request)."""
        return self._asleep

    @property
    def idle_reason(self) -> IdleReason | None:
        """Why its workers were stopped (None: they run, or are starting)."""
        return self._idle_reason if self._asleep else None

    @property
    def last_request(self) -> float | None:
        """When its last request arrived (``time.time()``); None before the first."""
        return self._clock.last_request

    @property
    def last_used(self) -> float:
        return self._clock.last_used

    @property
    def loaded_at(self) -> float | None:
        """When it last became ready (``time.monotonic``); None while it is not loaded."""
        return None if self._asleep or not self._ready else self._loaded_at

    def pids(self) -> list[int]:
        return [pid for r in self.replicas if (pid := r.pid) is not None]

    def footprint_pids(self) -> list[int]:
        """Its worker processes: the replicas, the template and the template's standby."""
        template = self._template.pids() if self._template is not None else []
        return [*self.pids(), *template]

    def summary(self) -> tuple[VersionState, str]:
        """The version's (state, message) from its replicas'; an idle set is READY."""
        failed = all(r.state == VersionState.FAILED for r in self.replicas)
        if self._asleep and not self._ready and not failed:
            idle = BUDGET_MESSAGE if self._idle_reason == IdleReason.MEMORY_BUDGET else IDLE_MESSAGE
            return VersionState.READY, WAKING_MESSAGE if self._woke_at else idle
        if len(self.replicas) == 1:
            only = self.replicas[0]
            return only.state, only.message
        ready = len(self._ready)
        if ready:
            state = VersionState.READY
        elif all(r.state == VersionState.FAILED for r in self.replicas):
            state = VersionState.FAILED
        elif all(r.state == VersionState.PENDING for r in self.replicas):
            state = VersionState.PENDING
        else:
            state = VersionState.LAUNCHING
        parts = [f"{ready} of {len(self.replicas)} replicas ready"]
        parts += [
            f"replica {r.index}: {r.message}"
            for r in self.replicas
            if r.state != VersionState.READY
        ]
        return state, "; ".join(parts) + ("" if parts[-1].endswith(".") else ".")

    def failure(self) -> str | None:
        """Why the set cannot become fully READY (a replica FAILED), or None."""
        failed = [r for r in self.replicas if r.state == VersionState.FAILED]
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
        self._clock.requested()
        ready = self._ready
        if not ready and self._asleep:
            began = time.monotonic()
            ready = await self._woken(timeout)
            timeout = max(timeout - (time.monotonic() - began), 0.001)
            successor = self.successor  # retired meanwhile (a cluster update)
            if successor is not None:
                return await successor.request(content_type, body, timeout)
        if not ready:
            raise UnavailableError(
                f"No replica of {self.label} is ready; retry shortly.", retry_after=2
            )
        replica = ready[0] if len(ready) == 1 else self._pick(ready)
        self.inflight += 1
        replica.inflight += 1
        try:
            # A worker that dies before it answers raises UnavailableError(sent=True): the
            # gateway sends the request once more (gateway/dispatch.py), to another replica
            # or to this one restarted.
            return await replica.client.request(content_type, body, timeout)
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

    async def ping(self, timeout: float = 2.0) -> wire.Pong:
        """The first ready replica's PONG (for ``/metrics``)."""
        for replica in self._ready:
            return await replica.client.ping(timeout)
        raise UnavailableError(f"No replica of {self.label} is ready.")

    # -- supervision ---------------------------------------------------------------------------

    def _prefix(self, replica: _Replica) -> str:
        return f"Replica {replica.index}: " if len(self.replicas) > 1 else ""

    def _set(
        self,
        replica: _Replica,
        state: VersionState,
        message: str,
        event_type: str = "",
        text: str = "",
    ) -> None:
        replica.state, replica.message = state, message
        self._ready = tuple(r for r in self.replicas if r.state == VersionState.READY)
        self._emit(event_type, text, replica.pid)
        self._stir()

    def _stir(self) -> None:
        """Wake the requests waiting for this set to wake (:meth:`_woken`): look again."""
        stirred, self._stirred = self._stirred, None
        if stirred is not None:
            stirred.set()

    def tell(self, event_type: str, text: str) -> None:
        """Record an event about the version (its state unchanged): its warm process's."""
        self._emit(event_type, text)

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

    @contextlib.asynccontextmanager
    async def _start_turn(self, replica: _Replica) -> AsyncIterator[None]:
        """Held while ``replica`` starts: a turn of the start queue, unless it is forked from
        a template that runs (milliseconds) or there is no queue."""
        if self._starts is None or self._forks_now():
            yield
            return
        async with self._one_start:
            if self._forks_now():  # another replica brought the template up meanwhile
                yield
                return
            urgency = Urgency.RESTART if replica.served else self._urgency()
            priority = StartPriority.of(urgency, self.spec.registered_at, self.spec.called_at)
            async with self._starts.turn(priority, partial(self._waiting, replica)) as turn:
                self._began(replica, turn)
                yield

    def _forks_now(self) -> bool:
        return self._template is not None and self._template.up

    def _urgency(self) -> Urgency:
        if self.spec.pointed_at:
            return Urgency.POINTED_AT
        return Urgency.CALLED if self.spec.called_at else Urgency.OTHER

    def _waiting(self, replica: _Replica, ahead: int) -> None:
        """``replica``'s start waits for a turn, ``ahead`` others first."""
        message = f"Waiting for a start slot: {ahead} ahead."
        self._set(replica, VersionState.PENDING, message)

    def _began(self, replica: _Replica, turn: Turn) -> None:
        """``replica``'s start got its turn."""
        slots = self._starts.slots if self._starts is not None else 0
        waited = (
            f"after waiting {turn.waited:.1f} s for a start slot ({turn.ahead} ahead)"
            if turn.queued
            else "at once"
        )
        text = (
            f"{self._prefix(replica)}Worker start began {waited}; at most {slots} "
            "start at once (REGSERVE_WORKER_START_PARALLELISM)."
        )
        self._set(replica, VersionState.LAUNCHING, "Loading the model.", "WORKER_STARTING", text)

    async def _supervise(self, replica: _Replica) -> None:
        # adopted (see adopt): watched, and restarted, like any other
        await supervise(_Supervised(self, replica), self._policy, replica.stopping, replica.process)

    async def _watch_overruns(self) -> None:
        """A worker still busy with a request ``overrun_grace`` seconds after its caller got a
        504 is stuck, or too slow for its deadline: it is killed, and started again (its other
        requests are sent once more by the gateway)."""
        grace = self._settings.overrun_grace
        while True:
            await asyncio.sleep(min(grace / 4, 1.0))
            for replica in self._ready:
                overdue = replica.client.overdue_for()
                process = replica.process
                if overdue > grace and process is not None and process.returncode is None:
                    timeout = self._settings.request_timeout
                    replica.replaced = (
                        f"it held a request {overdue:.0f} s past its "
                        f"{timeout:g} s deadline; it was replaced"
                    )
                    text = f"{self._prefix(replica)}Worker pid {process.pid}: {replica.replaced}."
                    self._emit("WORKER_REPLACED", text, process.pid)
                    process.kill()

    # -- idleness (see regserve.backends.local.idle) --------------------------------------------

    async def _watch_idle(self) -> None:
        clock = self._clock
        while True:
            await asyncio.sleep(clock.check_every())
            if clock.due() and self._may_sleep():
                idle_for, timeout = clock.idle_for(), clock.timeout or 0.0
                text = (
                    f"Version {self.spec.version} unloaded after {idle_for:.0f} s without a "
                    f"request (idle timeout {timeout:g} s: tag regserve.idle_timeout, "
                    "REGSERVE_IDLE_TIMEOUT); its next request loads it again."
                )
                await self._sleep(IdleReason.IDLE_TIMEOUT, "VERSION_IDLE", text)

    def may_unload(self) -> bool:
        """The memory budget may unload it now (see :meth:`_may_sleep`)."""
        return self._may_sleep()

    async def unload_for_budget(self, text: str) -> bool:
        """Unload it for the memory budget (``VERSION_EVICTED``); False when it may not be
        unloaded now (a request came meanwhile)."""
        if not self._may_sleep():
            return False
        text = f"Version {self.spec.version}: {text}"
        await self._sleep(IdleReason.MEMORY_BUDGET, "VERSION_EVICTED", text)
        return True

    def _may_sleep(self) -> bool:
        return (
            not self._asleep
            and not self._abandoned
            and self.successor is None
            and not self.inflight
            and self.all_ready()
        )

    async def _sleep(self, reason: IdleReason, event_type: str, text: str) -> None:
        """Stop the workers and the template (the warm process stays); the set stays READY."""
        # No await before the replicas are out of reach: no request is sent to a worker
        # being stopped.
        self._asleep, self._ready, self._woke_at = True, (), None
        self._idle_reason = reason
        self._settled.clear()
        try:
            for replica in self.replicas:
                replica.stopping.set()
            await asyncio.gather(*(terminate(r.process) for r in self.replicas))
            if self._template is not None:
                await self._template.stop()
                self._template = self._new_template()  # started again by the next fork
            for replica in self.replicas:
                if replica.task is not None:
                    await _cancelled(replica.task)
                self._forget_worker(replica)
        finally:
            self._settled.set()
        note(self.replicas[0].paths.log, text)
        self._emit(event_type, text)

    def _forget_worker(self, replica: _Replica) -> None:
        """``replica`` as before its first start (its worker stopped for idleness)."""
        replica.task, replica.process, replica.stopping = None, None, asyncio.Event()
        replica.crashed = replica.forked = False
        replica.state, replica.message = VersionState.LAUNCHING, IDLE_MESSAGE
        replica.client.close()
        for path in (replica.paths.socket, replica.paths.pidfile):
            path.unlink(missing_ok=True)

    async def _woken(self, timeout: float) -> tuple[_Replica, ...]:
        """Wake the idle set (once, whoever asks) and wait for a ready replica, at most
        ``timeout`` and ``REGSERVE_UNAVAILABLE_WAIT``; UnavailableError when it failed to load
        (FAILED) or is not ready in time."""
        if self._waking is None and not self._closed:
            self._waking = asyncio.create_task(self._wake(), name=f"wake {self.label}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout, self._settings.unavailable_wait)
        while not self._ready and not self._closed and self.successor is None:
            if self.state == VersionState.FAILED:
                raise UnavailableError(
                    f"Version {self.spec.version} of '{self.spec.model_name}' failed to load "
                    f"again after being idle: {self.summary()[1]}",
                    retry_after=30,
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UnavailableError(
                    f"{self.label} is loading again after being idle; retry shortly.",
                    retry_after=2,
                )
            if self._stirred is None:
                self._stirred = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stirred.wait(), remaining)
        return self._ready

    async def _wake(self) -> None:
        await self._settled.wait()
        if self._closed:
            return
        self._woke_at = time.monotonic()
        _log.info("waking %s for a request", log_safe(self.label))
        note(self.replicas[0].paths.log, "loading the model again for a request (it was idle)")
        self._emit()
        for replica in self.replicas:
            replica.task = asyncio.create_task(
                self._supervise(replica),
                name=f"supervise {self.spec.model_name} v{self.spec.version} r{replica.index}",
            )

    def _woken_up(self, replica: _Replica, pid: int) -> None:
        """The first replica serves again after a wake."""
        took = time.monotonic() - (self._woke_at or time.monotonic())
        self._asleep, self._waking, self._woke_at = False, None, None
        text = (
            f"Version {self.spec.version} loaded again for a request; took {took:.2f} s "
            f"(worker pid {pid})."
        )
        self._set(replica, VersionState.READY, "Serving.", "VERSION_WOKEN", text)

    async def _explain(self, replica: _Replica, pid: int, code: int) -> str:
        """How a replica's worker ended: its exit, the cluster limit that killed it, or why
        it was replaced."""
        if replica.replaced:
            why, replica.replaced = replica.replaced, ""
            return f"{self._prefix(replica)}Worker pid {pid} was killed: {why}"
        if code == UNKNOWN_EXIT and replica.forked and self._template is not None:
            code = await self._template.exit_code(pid) or code
        tail = read_tail(replica.paths.log, max_lines=15)  # was it killed for memory?
        oom = (
            self._limits.explain_exit(self.spec.model_name, pid, code, tail)
            if self._limits is not None
            else None
        )
        return f"{self._prefix(replica)}Worker pid {pid} {oom or describe_exit(code)}"

    def _announce_ready(self, replica: _Replica, pid: int) -> None:
        prefix = self._prefix(replica)
        self._clock.touch()
        self._loaded_at = time.monotonic()
        if self._asleep:
            self._woken_up(replica, pid)
        elif replica.crashed:
            text = f"{prefix}Worker restarted (pid {pid}) and is serving again."
            self._set(replica, VersionState.READY, "Serving.", "WORKER_RESTARTED", text)
        elif not self._ready:
            text = f"Version {self.spec.version} is ready (worker pid {pid})."
            if len(self.replicas) > 1:
                text = f"Version {self.spec.version} is ready ({prefix.lower()}pid {pid})."
            self._set(replica, VersionState.READY, "Serving.", "VERSION_READY", text)
        else:
            text = f"{prefix}Serving (worker pid {pid})."
            self._set(replica, VersionState.READY, "Serving.", "REPLICA_READY", text)

    def _fail(self, replica: _Replica, message: str) -> None:
        others_serve = any(
            r is not replica and r.state != VersionState.FAILED for r in self.replicas
        )
        kind = "REPLICA_FAILED" if others_serve else "VERSION_FAILED"
        self._set(replica, VersionState.FAILED, message, kind, message)

    def _record(
        self, replica: int | None = None, template_protocol: int | None = None
    ) -> WorkerRecord:
        """The record of a worker of this set, before it runs (pid, socket, python: unknown)."""
        spec = self.spec
        return WorkerRecord(
            0,
            0,
            "",
            spec.model_name,
            "",
            env_key=spec.env_key,
            version=spec.version,
            model_path=str(spec.model_path),
            generation=self.generation,
            replica=replica,
            template_protocol=template_protocol,
        )

    async def _spawn(self, replica: _Replica) -> ProcessHandle:
        record = self._record(replica=replica.index)
        process = await self._fork(replica, record)
        replica.forked = process is not None
        if process is None:
            process = await self._start_worker(replica.paths, record)
        replica.process = process
        how = "forked from the template" if replica.forked else "started"
        label = log_safe(self.label)
        _log.info(
            "%s worker pid %s for replica %s of %s (generation %s)",
            how,
            process.pid,
            replica.index,
            label,
            self.generation,
        )
        if len(self.replicas) > 1 or self.generation:
            note(
                replica.paths.log,
                f"replica {replica.index} of {len(self.replicas)} {how} "
                f"as pid {process.pid} (cluster generation {self.generation})",
            )
        return process

    async def _fork(self, replica: _Replica, record: WorkerRecord) -> WorkerProcess | None:
        """The replica forked from the set's template, or None (start a fresh worker)."""
        template = self._template
        if template is None:
            return None
        orphan_timeout = self._settings.orphan_timeout
        pid = await template.fork(replica.paths.socket, orphan_timeout)
        running = template.process
        if pid is None or running is None:
            return None
        return forked_worker(pid, replica.paths, running.record, record, self._place())

    def _args(self, extra: tuple[str, ...] = ()) -> list[str]:
        """This version's worker options (``--template`` in ``extra``)."""
        spec = self.spec
        return [
            "--model-path",
            str(spec.model_path),
            "--name",
            spec.model_name,
            "--version",
            spec.version,
            *self._worker_args(),
            *extra,
        ]

    async def _start_worker(
        self, paths: WorkerPaths, record: WorkerRecord | None, extra: tuple[str, ...] = ()
    ) -> WorkerProcess:
        """``python -m regserve.worker`` for this version (``--template`` in ``extra``)."""
        spec = self.spec
        return await spawn_worker(
            str(spec.python or sys.executable),
            self._args(extra),
            paths,
            spec.worker_path if spec.python is not None else None,
            self._settings.log_max_bytes,
            record,
            self._settings.orphan_timeout,
            self._sandbox,
            self._place(),
        )

    async def _launch_template(self, paths: WorkerPaths) -> WorkerProcess:
        record = self._record(template_protocol=wire.TEMPLATE_PROTOCOL)
        process = await self._fork_template(paths, record)
        if process is not None:
            how = f"forked from the warm process pid {self._warm.pid if self._warm else '?'}"
        else:
            process = await self._start_worker(paths, record, ("--template",))
            how = "started"
        note(
            paths.log,
            f"template worker {how} as pid {process.pid} "
            f"(cluster generation {self.generation}): replicas are forked from it",
        )
        return process

    async def _fork_template(
        self, paths: WorkerPaths, record: WorkerRecord
    ) -> WorkerProcess | None:
        """The template forked from the model's warm process; None: start it cold."""
        if self._warm is None:
            return None
        args = self._args(("--template",))
        argv = worker_argv(paths, self._settings.orphan_timeout, self._sandbox, args)
        return await self._warm.fork_template(argv, paths, record)

    def _template_fits(self, record: WorkerRecord) -> bool:
        spec = self.spec
        python = str(spec.python or sys.executable)
        return (record.model_path, record.python, record.template_protocol) == (
            str(spec.model_path),
            python,
            wire.TEMPLATE_PROTOCOL,
        )

    def _place(self) -> Callable[[int], None] | None:
        if self._limits is None:
            return None
        return partial(self._limits.place, self.spec.model_name)


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for its end; a cancellation that ``asyncio.wait_for`` swallowed
    (Python 3.11, when its inner future completes at the same moment) is repeated."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


class _Supervised:
    """One replica of a set, as :func:`~regserve.backends.local.supervision.supervise` sees it."""

    def __init__(self, replicas: ReplicaSet, replica: _Replica) -> None:
        self._set = replicas
        self._replica = replica
        self._attempts = 0

    def turn(self) -> AbstractAsyncContextManager[None]:
        return self._set._start_turn(self._replica)

    async def launch(self) -> ProcessHandle:
        attempt = f" (attempt {self._attempts + 1})" if self._attempts else ""
        self._set._set(self._replica, VersionState.LAUNCHING, f"Loading the model{attempt}.")
        return await self._set._spawn(self._replica)

    async def wait_ready(self, process: ProcessHandle) -> bool:
        replica = self._replica
        ready = await wait_until_ready(
            process,
            replica.paths.socket,
            partial(replica.client.ping, timeout=5.0),
            replica.stopping,
            self._set._settings.worker_start_timeout,
        )
        if not ready and process.returncode is None and not replica.stopping.is_set():
            _log.warning(
                "replica %s of %s did not become ready in time; killed it",
                replica.index,
                log_safe(self._set.label),
            )
        return ready

    async def serving(self, process: ProcessHandle, restarted: bool) -> None:
        self._attempts = 0
        self._replica.served = True
        self._set._announce_ready(self._replica, process.pid)

    async def unready(self, process: ProcessHandle) -> bool:
        return True  # counted as a crash

    async def wait_exit(self, process: ProcessHandle) -> int:
        return await wait_exit(
            process, self._replica.client.ping, self._set._settings.orphan_timeout
        )

    async def explain(self, process: ProcessHandle, code: int) -> str:
        return await self._set._explain(self._replica, process.pid, code)

    def charge(self, why: str) -> int | None:
        return None

    def restarting(self, why: str, delay: float, crashes: int) -> None:
        self._attempts = crashes
        allowed = self._set._settings.max_restarts - 1
        when = f"in {delay:g} s" if delay else "now"
        text = f"{why}; restarting {when} (restart {crashes} of {allowed})."
        self._set._set(self._replica, VersionState.LAUNCHING, text, "WORKER_CRASHED", text)
        self._replica.crashed = True

    def give_up(self, why: str, crashes: int) -> None:
        tail = read_tail(self._replica.paths.log, max_lines=15)
        self._set._fail(
            self._replica, f"{why}; it crashed {crashes} times in a row. Last log lines:\n{tail}"
        )

    def cannot_start(self, error: Exception) -> None:
        self._set._fail(self._replica, f"Could not start the worker: {error}")

    async def stopped_while_starting(self, process: ProcessHandle) -> None:
        if not self._set._abandoned:
            await terminate(process)
