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
(:mod:`regserve.backends.local.bluegreen`).

Workers outlive this process: ``start`` finds the ones a previous process left
(:mod:`.adoption`), ``adopt`` serves a version from them (no new process), and
``close(keep_workers=True)`` leaves them running for the next process.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from functools import partial
from pathlib import Path

from regserve.backends.base import Adopted, VersionListener, VersionSpec
from regserve.backends.batching import BatchSettings
from regserve.backends.local import bluegreen
from regserve.backends.local.adoption import Leftovers
from regserve.backends.local.limits import ResourceLimits
from regserve.backends.local.logs import read_tail
from regserve.backends.local.paths import WorkerPaths, run_dir_for
from regserve.backends.local.process import WorkerProcess
from regserve.backends.local.records import WorkerRecord
from regserve.backends.local.replicas import ReplicaSet
from regserve.backends.local.shared import SharedWorker
from regserve.backends.replicas import needs_new_workers, replicas_for
from regserve.backends.sharing import fork_replicas, share_workers
from regserve.nodes import NodeTypes
from regserve.router import Target
from regserve.settings import Settings
from regserve.store import ClusterConfig

__all__ = ["LocalBackend"]

_log = logging.getLogger("regserve.supervisor")


class LocalBackend:
    """Worker subprocesses on this machine (``--backend local``)."""

    def __init__(
        self, settings: Settings, listener: VersionListener, node_types: NodeTypes | None = None
    ) -> None:
        self._settings = settings
        self._data_dir = settings.resolved_data_dir()
        self._node_types = node_types or NodeTypes.defaults()
        self._limits = ResourceLimits(  # node types as resource limits (limits/)
            self._node_types, self._data_dir, settings.resource_limits
        )
        self._listener = listener
        self._sets: dict[tuple[str, str], ReplicaSet] = {}
        self._shared: dict[tuple[str, str], SharedWorker] = {}
        """(model, version) -> the shared worker it runs in."""
        self._clusters: dict[str, ClusterConfig] = {}
        self._generations: dict[str, int] = {}
        self._staged: dict[str, dict[str, ReplicaSet]] = {}
        """model -> version -> the replicas a cluster update is starting beside the running."""
        self._updating: dict[str, asyncio.Lock] = {}
        self._leftovers = Leftovers()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        run_dir = run_dir_for(self._data_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        await self._leftovers.find(run_dir)
        await asyncio.to_thread(self._limits.start)  # limits: pick the mechanism, clean up

    async def close(self, keep_workers: bool = False) -> None:
        if not keep_workers:
            await asyncio.gather(*(self.undeploy(m, v) for m, v in self._keys()))
            await self._leftovers.release()
            self._limits.close()  # limits: remove every cluster's cgroup
            return
        # Leave every worker running with its record (and in its cgroup); closing our
        # connections starts their orphan watch, which the next process's connections stop.
        for replicas in [*self._sets.values(), *(
                s for staged in self._staged.values() for s in staged.values())]:  # fmt: skip
            replicas.abandon()
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
        cluster = self._clusters.get(model_name)
        count = replicas_for(cluster, self._settings, self._node_types)
        generations = {leftover.record.generation or 0 for leftover in leftovers}
        why = next(
            (w for w in (self._mismatch(lo.record, model_name, version, model_path)
                         for lo in leftovers) if w),
            "",
        )  # fmt: skip
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
            model_name, version, model_path,
            Path(first.python) if first.env_key else None,
            Path(first.pythonpath) if first.pythonpath else None,
            first.env_key,
        )  # fmt: skip
        replicas = self.new_set(spec, cluster, generation, self._listener)
        for leftover in kept:
            replicas.adopt(leftover.record.replica or 1, WorkerProcess(leftover.record),
                           leftover.client)  # fmt: skip
            self._limits.place(model_name, leftover.record.pid)  # the cluster's current limits
        self._sets[(model_name, version)] = replicas
        replicas.start()
        _log.info("adopted %s of %s worker(s) %s for %s", len(kept), count,
                  [lo.record.pid for lo in kept], replicas.label)  # fmt: skip
        return Adopted(first.pid, first.env_key)

    def _mismatch(self, record: WorkerRecord, model_name: str, version: str, path: Path) -> str:
        """Why a leftover worker cannot serve this version now ("" when it can)."""
        cluster = self._clusters.get(model_name)
        if record.shared or share_workers(
            cluster.tags if cluster else (), self._settings.share_workers
        ):
            return "worker sharing is on for the model, or was when it started"
        if record.model_path != str(path):
            return f"it runs the model in {record.model_path}, not {path}"
        local = self._settings.env_manager == "local"
        if local != (record.env_key is None) or (local and record.python != sys.executable):
            return f"it runs in another environment ({record.env_key or record.python})"
        return ""

    async def release_leftovers(self) -> None:
        await self._leftovers.release()

    async def start_cluster(self, model_name: str, config: ClusterConfig) -> None:
        """Create the cluster, or move a running one to ``config`` blue-green (see
        :mod:`regserve.backends.local.bluegreen`); ClusterUpdateError when that failed."""
        old = self._clusters.get(model_name)
        if old is None or not needs_new_workers(old, config) or self._shares(old, config):
            self._clusters[model_name] = config
            self._limits.open(model_name, config.node_type_id)  # limits: new workers get these
            return
        async with self._lock(model_name):
            await self._replace_cluster(model_name, config)

    async def _replace_cluster(self, model_name: str, config: ClusterConfig) -> None:
        generation = self._generations.get(model_name, 0) + 1
        current = {v: s for (m, v), s in self._sets.items() if m == model_name}
        previous = self._clusters[model_name]
        self._limits.open(model_name, config.node_type_id)  # limits: the new workers' cgroup
        staged = self._staged[model_name] = {
            v: self.new_set(s.spec, config, generation, bluegreen.quiet) for v, s in current.items()
        }
        try:
            await bluegreen.bring_up(current, staged, self._settings.cluster_update_timeout)
        except BaseException:
            self._staged.pop(model_name, None)
            await asyncio.gather(*(new.stop() for new in staged.values()))
            self._limits.open(model_name, previous.node_type_id)  # limits: back to the old
            raise
        self._staged.pop(model_name, None)
        self._clusters[model_name] = config
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
        """The cluster's resource limits, for its events ("cgroup v1, 1 core, 2048 MiB")."""
        return self._limits.describe(model_name)

    def _shares(self, old: ClusterConfig, new: ClusterConfig) -> bool:
        default = self._settings.share_workers
        return share_workers(old.tags, default) or share_workers(new.tags, default)

    def _lock(self, model_name: str) -> asyncio.Lock:
        return self._updating.setdefault(model_name, asyncio.Lock())

    async def stop_cluster(self, model_name: str) -> None:
        await asyncio.gather(*(self.undeploy(m, v) for m, v in self._keys() if m == model_name))
        for staged in self._staged.pop(model_name, {}).values():
            await staged.stop()
        self._clusters.pop(model_name, None)
        self._limits.release(model_name)  # limits: remove the cluster's cgroup

    # -- versions ----------------------------------------------------------------------------

    def _keys(self) -> list[tuple[str, str]]:
        return [*self._sets, *self._shared]

    async def deploy(self, spec: VersionSpec) -> None:
        async with self._lock(spec.model_name):  # after a cluster update, in the new cluster
            key = (spec.model_name, spec.version)
            if key in self._sets or key in self._shared:
                return
            cluster = self._clusters.get(spec.model_name)
            tags = cluster.tags if cluster else ()
            if share_workers(tags, self._settings.share_workers):
                self._deploy_shared(spec)
                return
            generation = self._generations.get(spec.model_name, 0)
            replicas = self.new_set(spec, cluster, generation, self._listener)
            self._sets[key] = replicas
            replicas.start()

    def new_set(
        self,
        spec: VersionSpec,
        cluster: ClusterConfig | None,
        generation: int,
        listener: VersionListener,
    ) -> ReplicaSet:
        """The replicas of ``spec`` under ``cluster`` (not started)."""
        count = replicas_for(cluster, self._settings, self._node_types)
        tags = cluster.tags if cluster else ()
        batching = BatchSettings.from_tags(tags)
        fork = fork_replicas(tags, self._settings.fork_replicas)
        return ReplicaSet(
            self._settings, spec, count, generation, batching.worker_args, listener,
            self._limits, fork,
        )  # fmt: skip

    def _batching(self, model_name: str) -> BatchSettings:
        cluster = self._clusters.get(model_name)
        return BatchSettings.from_tags(cluster.tags if cluster else ())

    def _deploy_shared(self, spec: VersionSpec) -> None:
        """Join the model's shared worker for this environment (started with its first)."""
        environment = str(spec.python) if spec.python is not None else "local"
        group = next(
            (g for (m, _), g in self._shared.items()
             if m == spec.model_name and g.environment == environment),
            None,
        )  # fmt: skip
        if group is None:
            paths = WorkerPaths.for_shared(self._data_dir, spec.model_name, environment)
            paths.socket.parent.mkdir(parents=True, exist_ok=True)
            group = SharedWorker(
                self._settings, paths, spec, environment, self._listener, self._limits
            )
        self._shared[(spec.model_name, spec.version)] = group
        batching = partial(self._batching, spec.model_name)
        group.add(spec, self.log_file(spec.model_name, spec.version), batching)

    async def undeploy(self, model_name: str, version: str) -> None:
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

    def worker_pid(self, model_name: str, version: str) -> int | None:
        group = self._shared.get((model_name, version))
        if group is not None:
            return group.pid
        replicas = self._sets.get((model_name, version))
        pids = replicas.pids() if replicas is not None else []
        return pids[0] if pids else None
