"""LocalBackend: starts the worker subprocesses of every served version, watches them,
restarts them.

Each version runs as a :class:`~regserve.backends.local.replicas.ReplicaSet` of
``regserve.replicas`` worker processes (``REGSERVE_REPLICAS``, default 1), each restarted on
its own with exponential backoff; one that crashes ``max_restarts`` times in a row without
becoming ready is FAILED with the tail of its log in the state message. With worker sharing
on for a model (``REGSERVE_SHARE_WORKERS`` or its ``regserve.share_workers`` tag), its
versions that share an environment run in one
:class:`~regserve.backends.local.shared.SharedWorker` instead (one process, no replicas).
A cluster config change that needs new workers is applied blue-green
(:mod:`regserve.backends.local.bluegreen`). Over ``REGSERVE_MEMORY_BUDGET``, the least recently
used versions are unloaded (:mod:`regserve.backends.local.memory_budget`).

Workers outlive this process: ``start`` finds the ones a previous process left
(:mod:`.adoption`), ``adopt`` serves a version from them (no new process), and
``close(keep_workers=True)`` leaves them running for the next process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from regserve.backends.base import Adopted, VersionEvent, VersionListener, VersionSpec
from regserve.backends.inputs import input_limits
from regserve.backends.local import bluegreen
from regserve.backends.local.adoption import Leftovers
from regserve.backends.local.kept_logs import KeptLog, keep, log_times, prune, read_kept
from regserve.backends.local.limits import ResourceLimits
from regserve.backends.local.logs import read_tail, retire_logs
from regserve.backends.local.memory_budget import MemoryBudget, MemoryReading
from regserve.backends.local.paths import WorkerPaths, log_dir_for, run_dir_for
from regserve.backends.local.preload import modules_for_flavors
from regserve.backends.local.process import WorkerProcess
from regserve.backends.local.replicas import ReplicaSet
from regserve.backends.local.shared import SharedWorker
from regserve.backends.local.start_queue import StartQueue
from regserve.backends.local.warm import WarmSpec
from regserve.backends.local.warm_pool import WarmPool
from regserve.backends.local.worker_records import WorkerRecord
from regserve.backends.options import BatchSettings, ClusterOptions, needs_new_workers
from regserve.envs.local import local_interpreter
from regserve.errors import RegServeError
from regserve.nodes import NodeTypes
from regserve.router import Target
from regserve.sandbox import Isolation, IsolationUnavailableError, Sandbox
from regserve.sandbox.files import open_passage
from regserve.settings import Settings
from regserve.states import VersionState
from regserve.store import ClusterConfig
from regserve.worker.text import log_safe

__all__ = ["LocalBackend"]

_log = logging.getLogger("regserve.supervisor")


class LocalBackend:
    """Worker subprocesses on this machine (``--backend local``)."""

    def __init__(
        self,
        settings: Settings,
        listener: VersionListener,
        node_types: NodeTypes | None = None,
        isolation: Isolation | None = None,
    ) -> None:
        self._settings = settings
        self._data_dir = settings.resolved_data_dir()
        self._isolation = isolation or Isolation(settings, self._data_dir)
        """Each model's user, environment and limits (regserve.sandbox)."""
        self._local_python = sys.executable
        """The interpreter of ``--env-manager local`` workers (see :meth:`start`)."""
        self._local_found: asyncio.Task[None] | None = None
        """Finding (or, for workers' own users, building) it: awaited before a worker starts."""
        self._unavailable: str | None = None
        """Why no worker can be started here (workers' users cannot run the interpreter)."""
        self._node_types = node_types or NodeTypes.defaults()
        self._limits = ResourceLimits(  # node types as resource limits (limits/)
            self._node_types, self._data_dir, settings.resource_limits, settings.cluster_max_pids
        )
        self._listener = listener
        self._sets: dict[tuple[str, str], ReplicaSet] = {}
        self._shared: dict[tuple[str, str], SharedWorker] = {}
        """(model, version) -> the shared worker it runs in."""
        self._clusters: dict[str, ClusterConfig] = {}
        self._options: dict[str, ClusterOptions] = {}
        """Each cluster's config, parsed once (:meth:`_set_cluster`)."""
        self._generations: dict[str, int] = {}
        self._staged: dict[str, dict[str, ReplicaSet]] = {}
        """model -> version -> the replicas a cluster update is starting beside the running."""
        self._updating: dict[str, asyncio.Lock] = {}
        self._leftovers = Leftovers()
        self._warm = WarmPool(settings, self._limits.place, self._warm_teller)
        """Each model's warm processes, its templates are forked from (warm_pool.py)."""
        self._starts = StartQueue(settings.worker_start_parallelism)
        """Every replica set's starts that load a model take turns here (start_queue.py):
        first starts, crash restarts, scale-ups and blue-green updates alike."""
        budget = settings.memory_budget
        self._budget = MemoryBudget(
            int(budget) if budget is not None else None,
            settings.memory_budget_grace,
            lambda: list(self._sets.values()),
            self._unbudgeted_pids,
        )
        """Measures the workers' memory; unloads the least recently used over the budget."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        run_dir = run_dir_for(self._data_dir)
        open_passage(run_dir)  # workers pass through to their model's socket directory
        if self._settings.env_manager == "local":
            # In the background: building the bridge environment for workers' users takes
            # seconds on a first start, and regserve listens before any worker is needed.
            self._local_found = asyncio.create_task(self._find_local_python(), name="local python")
        await self._leftovers.find(run_dir)
        await asyncio.to_thread(self._limits.start)  # limits: pick the mechanism, clean up
        self._budget.start()

    def memory(self) -> MemoryReading | None:
        """The workers' memory as last measured (None before the first measurement)."""
        return self._budget.reading

    def _unbudgeted_pids(self) -> tuple[list[int], list[int]]:
        """(the shared workers' and staged sets' pids: in the budget, never unloaded; the warm
        processes' pids: outside it)."""
        groups = {id(g): g for g in self._shared.values()}.values()
        fixed = [pid for g in groups if (pid := g.pid) is not None]
        for staged in self._staged.values():
            fixed += [pid for s in staged.values() for pid in s.footprint_pids()]
        return fixed, self._warm.pids()

    async def _find_local_python(self) -> None:
        envs_root = self._settings.env_cache_dir or self._data_dir / "envs"
        builder = self._isolation.builder() if self._isolation.enabled else None
        try:
            self._local_python = await asyncio.to_thread(local_interpreter, envs_root, builder)
        except IsolationUnavailableError as exc:  # every version says so when deployed
            _log.error("%s", exc)
            self._unavailable = str(exc)

    async def _local_python_found(self) -> None:
        if self._local_found is not None:
            await asyncio.shield(self._local_found)

    async def close(self, keep_workers: bool = False) -> None:
        if self._local_found is not None:
            self._local_found.cancel()
        await self._budget.close()
        if not keep_workers:
            # Not undeploy: the versions stop with regserve, not for good; their logs are
            # neither cut nor pruned (kept_logs.py), and grow on when they start again.
            await asyncio.gather(*(self._stop_version(m, v) for m, v in self._keys()))
            await self._warm.stop_all()
            await self._leftovers.release()
            self._limits.close()  # limits: remove every cluster's cgroup
            return
        # Leave every serving worker running with its record (and in its cgroup); closing our
        # connections starts their orphan watch, which the next process's connections stop.
        for replicas in self._sets.values():
            replicas.abandon()
        self._warm.abandon_all()
        # A cluster update in progress is not kept: the next process starts it again from
        # the desired config. Its workers and template are stopped, not left behind.
        staged = [s for sets in self._staged.values() for s in sets.values()]
        await asyncio.gather(*(replicas.stop() for replicas in staged))
        for group in {id(g): g for g in self._shared.values()}.values():
            await group.close(keep_worker=True)
        self._sets.clear()
        self._staged.clear()
        self._shared.clear()

    async def adopt(self, model_name: str, version: str, model_path: Path) -> Adopted | None:
        """Serve the version from the replicas a previous process left, when they run this
        model in this environment, in one cluster generation (else stop them: deploy as usual).
        A replica that is not there (it was restarting) is started beside the adopted ones."""
        leftovers = self._leftovers.claim_version(model_name, version)
        if not leftovers:
            return None
        await self._local_python_found()  # a leftover runs this interpreter, or is not adopted
        options = self.options(model_name)
        count = options.replicas
        generations = {leftover.record.generation or 0 for leftover in leftovers}
        why = next(
            (
                w
                for w in (
                    self._mismatch(lo.record, model_name, version, model_path) for lo in leftovers
                )
                if w
            ),
            "",
        )
        if not why and len(generations) > 1:
            why = "its replicas belong to different cluster generations"
        kept = [lo for lo in leftovers if 1 <= (lo.record.replica or 1) <= count] if not why else []
        for leftover in leftovers:
            if leftover not in kept:
                why = why or f"the cluster wants {count} replicas"
                await self._leftovers.discard(leftover, why)
        if not kept:
            return None
        generation = generations.pop()
        self._generations[model_name] = max(self._generations.get(model_name, 0), generation)
        first = kept[0].record
        spec = VersionSpec(
            model_name,
            version,
            model_path,
            Path(first.python),
            Path(first.pythonpath) if first.pythonpath else None,
            first.env_key,
        )
        try:
            sandbox = self._isolation.sandbox_for(model_name, options.network)
        except RegServeError as exc:  # deployed afresh, where the failure is reported
            for leftover in kept:
                await self._leftovers.discard(leftover, exc.message)
            return None
        replicas = self.new_set(spec, options, generation, self._listener, sandbox)
        for leftover in kept:
            replicas.adopt(
                leftover.record.replica or 1, WorkerProcess(leftover.record), leftover.client
            )
            self._limits.place(model_name, leftover.record.pid)  # the cluster's current limits
        self._sets[(model_name, version)] = replicas
        replicas.start()
        _log.info(
            "adopted %s of %s worker(s) %s for %s",
            len(kept),
            count,
            [lo.record.pid for lo in kept],
            log_safe(replicas.label),
        )
        return Adopted(first.pid, first.env_key)

    def _mismatch(self, record: WorkerRecord, model_name: str, version: str, path: Path) -> str:
        """Why a leftover worker cannot serve this version now ("" when it can)."""
        if record.shared or self.options(model_name).share_workers:
            return "worker sharing is on for the model, or was when it started"
        if record.model_path != str(path):
            return f"it runs the model in {record.model_path}, not {path}"
        local = self._settings.env_manager == "local"
        if local != (record.env_key is None) or (local and record.python != self._local_python):
            return f"it runs in another environment ({record.env_key or record.python})"
        return ""

    async def release_leftovers(self) -> None:
        await self._leftovers.release()

    async def environment_settled(self) -> None:
        """Workers get an environment of their own (``sandbox/environ.py``): nothing to wait
        for."""

    async def prewarm(self, model_name: str, flavors: Mapping[str, object]) -> None:
        """``--env-manager local``: start the model's warm process now, importing what a model
        with these flavors needs (the demo's, while it is being registered). With a
        virtualenv, its interpreter is not known before its first version is prepared."""
        options = self.options(model_name)
        if self._settings.env_manager != "local" or not options.fork_replicas:
            return
        await self._local_python_found()
        try:
            sandbox = self._isolation.sandbox_for(model_name, options.network)
        except RegServeError:
            return  # said when a version is deployed
        modules = tuple(modules_for_flavors(flavors))
        spec = WarmSpec(model_name, Path(self._local_python), None, None, modules)
        log_dir_for(self._data_dir, model_name).mkdir(parents=True, exist_ok=True)  # its log's
        self._warm.prewarm(spec, sandbox)

    async def start_cluster(self, model_name: str, config: ClusterConfig) -> None:
        """Create the cluster, or move a running one to ``config`` blue-green (see
        :mod:`regserve.backends.local.bluegreen`); ClusterUpdateError when that failed."""
        old = self._clusters.get(model_name)
        options = ClusterOptions.of(config, self._settings, self._node_types)
        if old is None or not needs_new_workers(old, config) or self._shares(model_name, options):
            self._set_cluster(model_name, config, options)
            self._limits.open(model_name, config.node_type_id)  # limits: new workers get these
            return
        async with self._lock(model_name):
            await self._replace_cluster(model_name, config, options)

    def options(self, model_name: str) -> ClusterOptions:
        """The model's cluster options (the defaults before its cluster starts)."""
        options = self._options.get(model_name)
        return options if options is not None else ClusterOptions.of(None, self._settings)

    def _set_cluster(self, model_name: str, config: ClusterConfig, options: ClusterOptions) -> None:
        self._clusters[model_name] = config
        self._options[model_name] = options

    async def _replace_cluster(
        self, model_name: str, config: ClusterConfig, options: ClusterOptions
    ) -> None:
        generation = self._generations.get(model_name, 0) + 1
        current = {v: s for (m, v), s in self._sets.items() if m == model_name}
        previous = self._clusters[model_name]
        self._limits.open(model_name, config.node_type_id)  # limits: the new workers' cgroup
        staged = self._staged[model_name] = {
            v: self.new_set(s.spec, options, generation, bluegreen.quiet)
            for v, s in current.items()
        }
        try:
            await bluegreen.bring_up(current, staged, self._settings.cluster_update_timeout)
        except BaseException:
            self._staged.pop(model_name, None)
            await asyncio.gather(*(new.stop() for new in staged.values()))
            self._limits.open(model_name, previous.node_type_id)  # limits: back to the old
            raise
        self._staged.pop(model_name, None)
        self._set_cluster(model_name, config, options)
        self._generations[model_name] = generation
        moves = []
        for version, new in staged.items():  # what undeploy left of it
            old = current[version]
            self._sets[(model_name, version)] = new
            new.listener = self._listener
            moves.append(bluegreen.retire(old, new, self._settings.request_timeout))
        # Shielded: once traffic moved, the old workers must drain and stop even when the
        # update is cancelled (serving disabled meanwhile, shutdown).
        await asyncio.shield(asyncio.gather(*moves))

    def describe_cluster(self, model_name: str) -> str:
        """The cluster's resource limits and isolation, for its events ("cgroup v1, 1 core,
        2048 MiB; workers run as user 61234, at most 1024 processes")."""
        try:
            sandbox = self._isolation.sandbox_for(model_name, self.options(model_name).network)
        except RegServeError as exc:
            return f"{self._limits.describe(model_name)}; {exc.message}"
        limits = self._limits.describe(model_name)
        capped = sandbox.user is not None and "processes" not in limits
        cap = f", at most {sandbox.max_pids} processes" if capped else ""
        return f"{limits}; workers run {sandbox.describe()}{cap}"

    def forget_model(self, model_name: str) -> None:
        self._isolation.forget(model_name)
        retire_logs(self._data_dir, model_name)

    def isolation_warning(self) -> str:
        """What a model's code can reach when workers cannot have users of their own."""
        return self._isolation.warning()

    def _shares(self, model_name: str, new: ClusterOptions) -> bool:
        """Worker sharing is on now, or is turned on: no blue-green (see shared.py)."""
        return self.options(model_name).share_workers or new.share_workers

    def _lock(self, model_name: str) -> asyncio.Lock:
        return self._updating.setdefault(model_name, asyncio.Lock())

    async def stop_cluster(self, model_name: str) -> None:
        await asyncio.gather(*(self.undeploy(m, v) for m, v in self._keys() if m == model_name))
        for staged in self._staged.pop(model_name, {}).values():
            await staged.stop()
        await self._warm.release(model_name, ())
        self._clusters.pop(model_name, None)
        self._options.pop(model_name, None)
        # What the model's code left behind (its own children, a fork bomb's) goes too.
        await asyncio.to_thread(self._isolation.kill_all, model_name)
        self._limits.release(model_name)  # limits: remove the cluster's cgroup

    # -- versions ----------------------------------------------------------------------------

    def _keys(self) -> list[tuple[str, str]]:
        return [*self._sets, *self._shared]

    async def deploy(self, spec: VersionSpec) -> None:
        async with self._lock(spec.model_name):  # after a cluster update, in the new cluster
            key = (spec.model_name, spec.version)
            if key in self._sets or key in self._shared:
                return
            if spec.python is None:  # --env-manager local
                await self._local_python_found()
                spec = dataclasses.replace(spec, python=Path(self._local_python), worker_path=None)
            options = self.options(spec.model_name)
            try:
                if self._unavailable is not None:
                    raise RegServeError(self._unavailable)
                sandbox = self._isolation.sandbox_for(spec.model_name, options.network)
                await asyncio.to_thread(self._isolation.grant, spec.model_name, spec.model_path)
            except (RegServeError, OSError) as exc:
                why = exc.message if isinstance(exc, RegServeError) else str(exc)
                message = f"The version cannot be started: {why}"
                self._listener(
                    VersionEvent(
                        spec.model_name,
                        spec.version,
                        VersionState.FAILED,
                        message,
                        "VERSION_FAILED",
                        message,
                    )
                )
                return
            if options.share_workers:
                self._deploy_shared(spec, sandbox)
                return
            generation = self._generations.get(spec.model_name, 0)
            replicas = self.new_set(spec, options, generation, self._listener, sandbox)
            self._sets[key] = replicas
            replicas.start()

    def new_set(
        self,
        spec: VersionSpec,
        options: ClusterOptions,
        generation: int,
        listener: VersionListener,
        sandbox: Sandbox | None = None,
    ) -> ReplicaSet:
        """The replicas of ``spec`` with the cluster's ``options`` (not started), in
        ``sandbox`` (by default the model's, under those options)."""
        sandbox = sandbox or self._isolation.sandbox_for(spec.model_name, options.network)
        limits = input_limits(self._settings).worker_args()
        args = partial(_worker_args, options.batching, limits)
        warm = self._warm.for_version(spec, sandbox) if options.fork_replicas else None
        return ReplicaSet(
            self._settings,
            spec,
            options.replicas,
            generation,
            args,
            listener,
            self._limits,
            options.fork_replicas,
            sandbox=sandbox,
            warm=warm,
            starts=self._starts,
            idle_timeout=options.idle_timeout,
        )

    def _batching(self, model_name: str) -> BatchSettings:
        return self.options(model_name).batching

    def _deploy_shared(self, spec: VersionSpec, sandbox: Sandbox) -> None:
        """Join the model's shared worker for this environment (started with its first)."""
        environment = str(spec.python) if spec.python is not None else "local"
        group = next(
            (
                g
                for (m, _), g in self._shared.items()
                if m == spec.model_name and g.environment == environment
            ),
            None,
        )
        if group is None:
            paths = WorkerPaths.for_shared(self._data_dir, spec.model_name, environment)
            group = SharedWorker(
                self._settings,
                paths,
                spec,
                environment,
                self._listener,
                self._limits,
                sandbox=sandbox,
            )
        self._shared[(spec.model_name, spec.version)] = group
        batching = partial(self._batching, spec.model_name)
        group.add(spec, self.log_file(spec.model_name, spec.version), batching)

    async def undeploy(self, model_name: str, version: str) -> None:
        await self._stop_version(model_name, version)
        await asyncio.to_thread(self._keep_log, model_name, version)

    async def _stop_version(self, model_name: str, version: str) -> None:
        group = self._shared.pop((model_name, version), None)
        if group is not None:
            await group.remove(version)
            return
        staged = self._staged.get(model_name, {}).pop(version, None)
        replicas = self._sets.pop((model_name, version), None)
        for stopping in (staged, replicas):
            if stopping is not None:
                # Routes no longer lead here; what was sent before is answered first.
                await stopping.drain(self._settings.request_timeout)
                await stopping.stop()
        await self._warm.release(model_name, self._interpreters(model_name))

    def _keep_log(self, model_name: str, version: str) -> None:
        """The stopped version's log stays, cut to size, and the model's oldest kept go."""
        keep(
            WorkerPaths.for_version(self._data_dir, model_name, version).log,
            self._settings.kept_log_bytes,
        )
        serving = self.deployed(model_name) | set(self._staged.get(model_name, {}))
        prune(log_dir_for(self._data_dir, model_name), self._settings.kept_logs, serving)

    def _interpreters(self, model_name: str) -> set[str]:
        """The interpreters the model's replica sets (running or staged) run."""
        sets = [*(s for (m, _), s in self._sets.items() if m == model_name)]
        sets += self._staged.get(model_name, {}).values()
        return {str(s.spec.python) for s in sets}

    def _warm_teller(self, model_name: str, python: str) -> Callable[[str, str], None]:
        """Where the events of the model's warm process for ``python`` go: the version that
        runs there deployed last (the one whose template it serves first)."""

        def tell(event_type: str, text: str) -> None:
            sets = [
                s
                for (m, _), s in self._sets.items()
                if m == model_name and str(s.spec.python) == python
            ]
            if sets:
                sets[-1].tell(event_type, text)
            else:
                _log.info("%s: %s", log_safe(model_name), text)

        return tell

    def target(self, model_name: str, version: str) -> Target | None:
        group = self._shared.get((model_name, version))
        if group is not None:
            return group.target(version)
        replicas = self._sets.get((model_name, version))
        return replicas if replicas is not None and replicas.ready else None

    def deployed(self, model_name: str) -> set[str]:
        return {v for m, v in self._keys() if m == model_name}

    def log_file(self, model_name: str, version: str) -> Path:
        path = WorkerPaths.for_version(self._data_dir, model_name, version).log
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def read_logs(self, model_name: str, version: str) -> str:
        path = WorkerPaths.for_version(self._data_dir, model_name, version).log
        own = read_tail(path, max_lines=2000, max_bytes=1024 * 1024)
        group = self._shared.get((model_name, version))
        return group.read_logs(version, own) if group is not None else own

    def kept_log(self, model_name: str, version: str) -> KeptLog | None:
        folder = log_dir_for(self._data_dir, model_name)
        return read_kept(folder, version, max_lines=2000, max_bytes=1024 * 1024)

    def log_times(self, model_name: str) -> dict[str, int]:
        return log_times(log_dir_for(self._data_dir, model_name))

    def worker_pid(self, model_name: str, version: str) -> int | None:
        group = self._shared.get((model_name, version))
        if group is not None:
            return group.pid
        replicas = self._sets.get((model_name, version))
        pids = replicas.pids() if replicas is not None else []
        return pids[0] if pids else None


def _worker_args(batching: BatchSettings, limits: list[str]) -> list[str]:
    """A version's worker options: its batching settings and the input limits."""
    return [*batching.worker_args(), *limits]
