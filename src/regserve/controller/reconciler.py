"""Controller: the reconcile loop.

registry (polled; an enable call or a webhook triggers an immediate pass) -> desired state
(enabled models x their non-archived READY versions) -> diff with what the backend runs ->
deploy / undeploy -> routing table swapped -> states and events persisted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from regserve.backends.base import Backend, ClusterUpdateError, VersionEvent, VersionSpec
from regserve.backends.options import check_config, needs_new_workers
from regserve.controller.environments import prepare_environment
from regserve.controller.model_files import local_model_folder, local_model_path
from regserve.controller.stored import stored_snapshot, stored_versions
from regserve.envs import EnvironmentManager
from regserve.errors import InvalidParameterError, NotFoundError, RegServeError
from regserve.metrics import ControlMetrics
from regserve.redaction import PathRedactor
from regserve.registry.models import ModelSnapshot, VersionInfo
from regserve.router import ModelRoutes, Router, ServedVersion
from regserve.settings import Settings
from regserve.states import EndpointState, VersionState, endpoint_state
from regserve.store import ClusterConfig, EndpointRecord, StateStore
from regserve.traffic import TrafficSplit, check_split, describe_split, readiness_notices
from regserve.worker.text import log_safe

__all__ = ["Controller", "RegistryReaderLike"]

_log = logging.getLogger("regserve.controller")
_LOG_MESSAGE = 2000
"""Characters of an event's message its log line keeps."""
_CALLED_WITHIN = 24 * 3600.0
_UNDERWAY = (VersionState.PENDING, VersionState.LAUNCHING)
"""Seconds back a version's last call counts for the order of starts."""


class RegistryReaderLike(Protocol):
    def snapshot(self, name: str) -> ModelSnapshot | None: ...

    def download(self, name: str, version: str, dest: Path) -> Path: ...


@dataclass
class _Served:
    """What the controller knows about one enabled model between passes."""

    config: ClusterConfig
    snapshot: ModelSnapshot | None = None
    versions: dict[str, tuple[VersionState, str]] = field(default_factory=dict)
    downloads: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    registry_down: bool = False
    update: asyncio.Task[None] | None = None
    """A cluster update in progress (the old cluster serves meanwhile)."""
    update_failed: tuple[ClusterConfig, str] | None = None
    """The config the last update failed to move to, and why (not retried until set again)."""
    called: dict[str, int] = field(default_factory=dict)
    """Version -> the last minute (ms) it was called, read when versions are to be deployed."""
    traffic: TrafficSplit | None = None
    """The traffic config, as the store had it at the last pass."""
    unready_refs: set[str] = field(default_factory=set)
    """The refs of ``traffic`` that took no traffic at the last publish (events on change)."""
    starting: bool = True
    """The cluster has started and some version is still on its way to READY or FAILED: a ref
    that waits for it is not news (no TRAFFIC_REF_* events at every restart)."""
    stored: dict[str, Path] = field(default_factory=dict)
    """Version -> its files, for the versions served before the registry was ready (a
    restart: :meth:`Controller.serve_stored`), until the first pass checks them."""


class Controller:
    """Keeps the backend, the routing table and the store in step with the registry."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        reader: RegistryReaderLike,
        backend: Backend,
        router: Router,
        events: asyncio.Queue[VersionEvent],
        node_types: dict[str, dict[str, object]],
        envs: EnvironmentManager | None = None,
        *,
        metrics: ControlMetrics | None = None,
        registry_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``registry_ready``: awaited before the first pass (``regserve up`` listens before
        its registry is ready; the reader raises ``RegistryStartingError`` until then)."""
        self._settings = settings
        self._store = store
        self._reader = reader
        self._backend = backend
        self._router = router
        self._events = events
        self.node_types = node_types
        self._envs = envs
        self._metrics = metrics
        self._registry_ready = registry_ready
        self._served: dict[str, _Served] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self.first_pass = asyncio.Event()
        """Set once the first pass is done (the workers a previous process left are adopted)."""
        self._stored: dict[str, dict[str, Path]] = {}
        """Model -> version -> files: what the store said was READY at the last start
        (:meth:`forget_previous_run`), served before the registry is ready."""
        self._models_dir = settings.resolved_data_dir() / "models"
        # State messages and events are shown to every reader of the model: no server paths.
        self._shown = PathRedactor.for_settings(settings)

    @property
    def default_node_type(self) -> str:
        return next(iter(self.node_types))

    # -- the loops ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile every poll interval, or at once when triggered; forever."""
        events = asyncio.create_task(self._consume_events(), name="version events")
        try:
            if self._registry_ready is not None:
                await self.serve_stored()
                await self._registry_ready()
            while True:
                try:
                    await self.reconcile_all()
                except Exception:  # the loop must survive anything a pass raises
                    _log.exception("reconcile pass failed")
                self.first_pass.set()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval)
                self._wake.clear()
        finally:
            events.cancel()

    async def forget_previous_run(self) -> None:
        """Before serving: the version states a previous process stored no longer hold (the
        first pass adopts the workers still running, and redeploys the others). The versions
        they said were READY, with their files still here, are kept for :meth:`serve_stored`."""
        self._stored = await asyncio.to_thread(stored_versions, self._store, self._models_dir)
        await asyncio.to_thread(
            self._store.reset_versions, "regserve restarted; adopting or redeploying this version."
        )

    async def serve_stored(self) -> None:
        """A restart, before the registry is ready: serve the versions that were READY from
        their files on disk (adopting the workers a previous process left, else starting
        them; their warm processes start with the first), with the stages and aliases of
        the stored routing table. The first pass then reconciles as usual: a version
        archived or deleted meanwhile is removed, the others are kept."""
        stored, self._stored = self._stored, {}
        for name, versions in sorted(stored.items()):
            try:
                await self._serve_stored_model(name, versions)
            except Exception:  # the first pass deploys what this could not
                _log.exception("serving %s from the store failed", log_safe(name))

    async def _serve_stored_model(self, name: str, versions: dict[str, Path]) -> None:
        async with self._locks.setdefault(name, asyncio.Lock()):
            endpoint = await asyncio.to_thread(self._store.get_endpoint, name)
            if endpoint is None or not endpoint.enabled or name in self._served:
                return
            served = await self._start_cluster(name, endpoint.desired_config)
            served.traffic = endpoint.traffic
            served.snapshot = stored_snapshot(name, versions, self._router.get(name))
            served.stored = dict(versions)
            for version in sorted(versions, key=partial(_start_order, served.snapshot, {})):
                if not await self._adopt(name, served, version):
                    self._begin_deploy(name, served, version)
            await self._publish(name, served)

    def trigger(self) -> None:
        """Ask for an immediate pass (an enable call, a webhook)."""
        self._wake.set()

    async def reconcile_all(self) -> None:
        enabled = {e.model_name for e in await asyncio.to_thread(self._store.list_endpoints)}
        names = sorted(enabled | set(self._served))
        await asyncio.gather(*(self.reconcile(name) for name in names))
        if self._metrics is not None:
            self._metrics.synced(not any(s.registry_down for s in self._served.values()))

    async def shutdown(self, keep_workers: bool = False) -> None:
        """Stop; ``keep_workers`` leaves the workers running for the next process to adopt."""
        for served in self._served.values():
            for task in served.downloads.values():
                task.cancel()
            await _cancel(served.update)
        await self._backend.close(keep_workers)

    # -- the control API ---------------------------------------------------------------------

    async def enable(self, name: str, actor: str | None = None) -> None:
        """Serve ``name``; ``actor`` (who asked) is named in the event."""
        snapshot = await asyncio.to_thread(self._reader.snapshot, name)
        if snapshot is None:
            raise NotFoundError(f"Registered model '{name}' does not exist in the registry.")
        default = ClusterConfig(self.default_node_type)
        created = snapshot.created_at or None
        if _replaced_while_off(await asyncio.to_thread(self._store.get_endpoint, name), created):
            # What the earlier model left (its kept logs) is not this one's: retired as when
            # a served model is deleted.
            await asyncio.to_thread(self._backend.forget_model, name)
        if await asyncio.to_thread(self._store.enable, name, default, created):
            message = f"Serving enabled for model '{name}'{_by(actor)}."
            await self._event(name, "SERVING_ENABLED", message, principal=actor)
        self.trigger()

    async def disable(self, name: str, actor: str | None = None) -> None:
        if not await asyncio.to_thread(self._store.disable, name):
            raise InvalidParameterError(f"Serving is not enabled for model '{name}'.")
        message = f"Serving disabled for model '{name}'{_by(actor)}."
        await self._event(name, "SERVING_DISABLED", message, principal=actor)
        await self.reconcile(name)

    async def model_gone(self, name: str, reason: str, actor: str | None = None) -> None:
        """The registered model ``name`` was deleted or renamed (``reason`` says which): stop
        serving it at once, so that nothing serves under its name until someone who manages
        a model of that name enables serving again."""
        if await asyncio.to_thread(self._store.disable, name):
            message = f"Serving disabled: {reason}{_by(actor)}."
            await self._event(name, "SERVING_DISABLED", message, principal=actor)
        await self.reconcile(name)

    async def update_config(
        self, name: str, config: ClusterConfig, actor: str | None = None
    ) -> None:
        if config.node_type_id not in self.node_types:
            offered = ", ".join(self.node_types)
            raise InvalidParameterError(
                f"Unknown node_type_id '{config.node_type_id}'. Offered: {offered} "
                "(GET /api/2.0/clusters/list-node-types)."
            )
        check_config(config)
        endpoint = await asyncio.to_thread(self._store.get_endpoint, name)
        if endpoint is None or not endpoint.enabled:
            raise InvalidParameterError(f"Serving is not enabled for model '{name}'.")
        await asyncio.to_thread(self._store.set_desired_config, name, config)
        message = f"Cluster config updated{_by(actor)}: {_describe(config)}."
        await self._event(name, "CLUSTER_CONFIG_UPDATED", message, principal=actor)
        served = self._served.get(name)
        if served is not None:
            served.update_failed = None  # asked again: try again
        await self.reconcile(name)

    async def update_traffic(
        self, name: str, split: TrafficSplit | None, actor: str | None = None
    ) -> None:
        """Set the traffic config of ``name``'s split URL (None or no routes: the default)."""
        if split is not None:
            check_split(split)
            split = split if split.routes else None
        endpoint = await asyncio.to_thread(self._store.get_endpoint, name)
        if endpoint is None or not endpoint.enabled:
            raise InvalidParameterError(
                f"Serving is not enabled for model '{name}'; enable it before setting its "
                "traffic config."
            )
        if endpoint.traffic == split:
            return  # the config it already has: nothing changes, nothing to record
        await asyncio.to_thread(self._store.set_traffic, name, split)
        message = f"Traffic config set{_by(actor)}: {describe_split(split)}."
        await self._event(name, "TRAFFIC_CONFIG_UPDATED", message, principal=actor)
        await self.reconcile(name)

    # -- one model ---------------------------------------------------------------------------

    async def reconcile(self, name: str) -> None:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            endpoint = await asyncio.to_thread(self._store.get_endpoint, name)
            if endpoint is None or not endpoint.enabled:
                await self._teardown(name)
                return
            served = self._served.get(name)
            if served is None:
                served = await self._start_cluster(name, endpoint.desired_config)
            if served.traffic != endpoint.traffic:
                served.traffic, served.unready_refs = endpoint.traffic, set()
            elif _should_update(served, endpoint.desired_config):
                update = self._update_cluster(name, served, endpoint.desired_config)
                if needs_new_workers(served.config, endpoint.desired_config):
                    # Blue-green takes as long as new workers take to load: in the background.
                    served.update = asyncio.create_task(update, name=f"update cluster {name}")
                else:
                    await update  # labels only: nothing restarts, done at once
            if await self._refresh_snapshot(name, served):
                gone = await self._gone(endpoint, served.snapshot)
                if gone is not None:
                    await self._stop_serving_gone(name, gone)
                    return
                await self._converge(name, served)
            await self._publish(name, served)

    async def _gone(self, endpoint: EndpointRecord, snapshot: ModelSnapshot | None) -> str | None:
        """Why the enabled model is not the one that was enabled any more (deleted, renamed,
        or deleted and created again by someone else), or None when it still is."""
        name = endpoint.model_name
        if snapshot is None:
            return f"registered model '{name}' no longer exists (it was deleted or renamed)"
        if not snapshot.created_at:
            return None  # a registry that does not tell
        if endpoint.model_created_at is None:  # enabled before creation times were recorded
            await asyncio.to_thread(self._store.set_model_created_at, name, snapshot.created_at)
            return None
        if endpoint.model_created_at != snapshot.created_at:
            return f"registered model '{name}' was deleted and created again"
        return None

    async def _stop_serving_gone(self, name: str, reason: str) -> None:
        if await asyncio.to_thread(self._store.disable, name):
            await self._event(name, "SERVING_DISABLED", f"Serving disabled: {reason}.")
        await self._teardown(name, gone=True)

    async def _start_cluster(self, name: str, config: ClusterConfig) -> _Served:
        await self._event(
            name, "CLUSTER_STARTING", f"Starting serving cluster ({_describe(config)})."
        )
        await self._backend.start_cluster(name, config)
        served = self._served[name] = _Served(config=config)
        await asyncio.to_thread(self._store.set_actual_config, name, config)
        limits = self._backend.describe_cluster(name)
        await self._event(name, "CLUSTER_STARTED", f"Serving cluster is up (limits: {limits}).")
        warning = self._backend.isolation_warning()
        if warning:
            await self._event(name, "WORKER_ISOLATION_OFF", warning)
        return served

    async def _update_cluster(self, name: str, served: _Served, config: ClusterConfig) -> None:
        """Move the running cluster to ``config`` (blue-green when workers change; the old
        cluster serves throughout), then record the outcome."""
        old = served.config
        renewing = needs_new_workers(old, config)
        if renewing:
            await self._event(
                name,
                "CLUSTER_UPDATING",
                f"Starting a new cluster with "
                f"{_describe(config)} beside the running one; traffic moves to it "
                "once its versions are READY.",
            )
        try:
            await self._backend.start_cluster(name, config)
        except Exception as exc:  # ClusterUpdateError, or anything unexpected: fail this update
            if not isinstance(exc, ClusterUpdateError):
                _log.exception("updating the cluster of %s failed", log_safe(name))
            reason = (
                exc.message if isinstance(exc, RegServeError) else f"{type(exc).__name__}: {exc}"
            )
            served.update_failed = (config, reason)
            message = (
                f"Cluster update to {_describe(config)} failed: {reason}. The "
                f"previous cluster ({_describe(old)}) keeps serving."
            )
            await self._event(name, "CLUSTER_UPDATE_FAILED", message)
            await self._publish(name, served)
            return
        finally:
            served.update = None
        served.config = config
        served.update_failed = None
        await asyncio.to_thread(self._store.set_actual_config, name, config)
        if renewing:
            message = (
                f"Cluster now runs with {_describe(config)} "
                f"(limits: {self._backend.describe_cluster(name)})."
            )
            await self._event(name, "CLUSTER_UPDATED", message)
        else:
            message = f"Cluster now runs with {_describe(config)} (no worker restarted)."
            await self._event(name, "CLUSTER_CONFIG_APPLIED", message)
        await self._publish(name, served)
        self.trigger()  # the desired config may have moved on meanwhile

    async def _teardown(self, name: str, gone: bool | None = None) -> None:
        """Stop serving ``name``. When the registered model served is ``gone`` (deleted,
        renamed or created anew; None: ask the registry), its local files go too: nothing of
        it is left for a model of the same name, created later, to be answered with or read."""
        served = self._served.pop(name, None)
        if served is None:
            return
        self._router.withdraw(name)
        for task in served.downloads.values():
            task.cancel()
        await _cancel(served.update)
        await self._backend.stop_cluster(name)
        await self._event(name, "CLUSTER_TERMINATED", "Serving cluster terminated.")
        if gone is None:
            gone = await self._replaced(name, served)
        if gone:
            folder = local_model_folder(self._models_dir, name)
            await asyncio.to_thread(shutil.rmtree, folder, True)
            await asyncio.to_thread(self._backend.forget_model, name)

    async def _replaced(self, name: str, served: _Served) -> bool:
        """Whether the registered model ``served`` served is not in the registry any more."""
        try:
            snapshot = await asyncio.to_thread(self._reader.snapshot, name)
        except RegServeError:
            return False  # cannot tell: keep the files
        if snapshot is None:
            return True
        served_at = served.snapshot.created_at if served.snapshot else 0
        return bool(served_at and snapshot.created_at and served_at != snapshot.created_at)

    async def _refresh_snapshot(self, name: str, served: _Served) -> bool:
        """Read the registry; False (keep serving what runs) when it cannot be reached."""
        try:
            snapshot = await asyncio.to_thread(self._reader.snapshot, name)
        except RegServeError as exc:
            if not served.registry_down:
                served.registry_down = True
                message = f"The registry cannot be reached ({exc.message}); serving what runs."
                await self._event(name, "REGISTRY_UNAVAILABLE", message)
            return False
        if served.registry_down:
            served.registry_down = False
            await self._event(name, "REGISTRY_RECOVERED", "The registry is reachable again.")
        served.snapshot = snapshot
        return True

    async def _converge(self, name: str, served: _Served) -> None:
        desired = _active_versions(served.snapshot)
        running = self._backend.deployed(name) | set(served.downloads) | set(served.versions)
        # Served from the store before the registry was ready: files the registry does not
        # name for that version any more are not served on (deployed again from its own).
        moved = {v for v in desired & set(served.stored) if self._files_moved(served, v)}
        served.stored.clear()
        for version in sorted(running - desired, key=int):
            await self._remove(name, served, version)
        for version in sorted(moved, key=int):
            await self._remove(name, served, version, "its files are not the registry's")
        new = (desired - running) | moved
        if new:
            served.called = await asyncio.to_thread(self._last_called, name)
        # In the order their workers should start (the backend's start queue orders the
        # starts that wait; this orders the ones that find a free slot at once).
        order = partial(_start_order, served.snapshot, served.called)
        for version in sorted(new, key=order):
            if not await self._adopt(name, served, version):
                self._begin_deploy(name, served, version)

    def _last_called(self, name: str) -> dict[str, int]:
        """Version -> the last minute (ms) it was called within ``_CALLED_WITHIN``."""
        since = int((time.time() - _CALLED_WITHIN) * 1000)
        called: dict[str, int] = {}
        for point in self._store.metric_history(name, since):
            if point.key == "requests_per_minute" and point.value > 0 and point.version:
                called[point.version] = max(called.get(point.version, 0), point.timestamp)
        return called

    def _model_path(self, served: _Served, version: str) -> Path:
        """Where the version's files are kept (``model_files.local_model_path``; before the
        registry is ready, where the store said they are)."""
        stored = served.stored.get(version)
        if stored is not None:
            return stored
        info = served.snapshot.version(version) if served.snapshot else None
        if info is None:  # only versions of the snapshot are deployed
            raise NotFoundError(f"Version {version} is not in the registry any more.")
        return local_model_path(self._models_dir, info)

    def _files_moved(self, served: _Served, version: str) -> bool:
        stored = served.stored[version]
        info = served.snapshot.version(version) if served.snapshot else None
        return (
            info is None or local_model_path(self._models_dir, info).resolve() != stored.resolve()
        )

    async def _adopt(self, name: str, served: _Served, version: str) -> bool:
        """Serve ``version`` from a worker a previous regserve process left running, if one
        runs its model: READY at once, nothing downloaded, built or started."""
        path = self._model_path(served, version)
        adopted = await self._backend.adopt(name, version, path)
        if adopted is None:
            return False
        if self._envs is not None and adopted.env_key is not None:
            self._envs.acquire(adopted.env_key, (name, version))
        pid = adopted.pid
        what = f"worker pid {pid}" if pid is not None else adopted.described
        message = f"Serving ({what}, adopted after a regserve restart)."
        files = self._files(path)
        await self._set_version(
            name, served, version, VersionState.READY, message, worker_pid=pid, files=files
        )
        text = f"{what[:1].upper()}{what[1:]} of version {version} adopted: it kept running "
        text += "through the restart."
        await self._event(name, "WORKER_ADOPTED", text, version)
        return True

    def _begin_deploy(self, name: str, served: _Served, version: str) -> None:
        message = "Downloading the model's artifacts."
        if version in served.stored:  # a restart, before the registry is ready
            message = "Starting from the model's files kept on disk."
        served.versions[version] = (VersionState.PENDING, message)
        if self._metrics is not None and served.snapshot is not None:
            created = {v.version: v.creation_timestamp for v in served.snapshot.versions}
            self._metrics.version_registered(name, version, created.get(version, 0))
        served.downloads[version] = asyncio.create_task(
            self._deploy(name, served, version), name=f"deploy {name} v{version}"
        )

    async def _deploy(self, name: str, served: _Served, version: str) -> None:
        try:
            files = self._files(self._model_path(served, version))
            await self._set_version(name, served, version, *served.versions[version], files=files)
            await self._event(name, "VERSION_DEPLOYING", f"Deploying version {version}.", version)
            spec = await self._prepare(name, served, version)
        except RegServeError as exc:
            await self._fail(name, served, version, exc.message)
            return
        except Exception as exc:  # anything unexpected fails this version only
            _log.exception("preparing %s v%s failed", log_safe(name), log_safe(version))
            await self._fail(name, served, version, f"{type(exc).__name__}: {exc}")
            return
        finally:
            served.downloads.pop(version, None)
        if self._served.get(name) is not served or version not in served.versions:
            return  # disabled or archived meanwhile
        await self._backend.deploy(_with_order(spec, served.snapshot, served.called))

    async def _prepare(self, name: str, served: _Served, version: str) -> VersionSpec:
        dest = self._model_path(served, version)
        try:
            if version in served.stored:  # on disk already; the registry may not be ready
                path = dest
            else:
                path = await asyncio.to_thread(self._reader.download, name, version, dest)
        except RegServeError as exc:
            raise RegServeError(f"Could not download the model's artifacts: {exc.message}") from exc
        if self._envs is None:
            return VersionSpec(name, version, path)

        async def report(event_type: str, message: str) -> None:
            if event_type:
                await self._event(name, event_type, message, version)
            else:
                await self._set_version(name, served, version, VersionState.PENDING, message)

        log = self._backend.log_file(name, version)
        built = await prepare_environment(self._envs, path, log, report)
        if self._metrics is not None:
            self._metrics.environment(built.reused, built.seconds)
        self._envs.acquire(built.key, (name, version))
        await asyncio.to_thread(
            self._store.put_version,
            name,
            version,
            VersionState.PENDING,
            "Environment ready; starting the worker.",
            environment=built.key,
        )
        return VersionSpec(name, version, path, built.python, self._envs.worker_path, built.key)

    async def _fail(self, name: str, served: _Served, version: str, message: str) -> None:
        if version not in served.versions:
            return
        await self._set_version(name, served, version, VersionState.FAILED, message)
        await self._event(name, "VERSION_FAILED", message, version)
        await self._publish(name, served)

    async def _remove(
        self, name: str, served: _Served, version: str, reason: str | None = None
    ) -> None:
        served.versions.pop(version, None)
        task = served.downloads.pop(version, None)
        if task is not None:
            task.cancel()
        # The version and the endpoint's status change in one transaction: nobody reads the
        # version gone and the status still counting it.
        status = self._endpoint_status(name, served)
        await asyncio.to_thread(self._store.delete_version, name, version, status)
        self._publish_routes(name, served)  # stop routing to it before stopping it
        await self._backend.undeploy(name, version)
        if self._envs is not None:
            self._envs.release((name, version))
        reason = reason or _removal_reason(served.snapshot, version)
        await self._event(name, "VERSION_REMOVED", f"Version {version} removed: {reason}.", version)

    # -- version events from the backend -----------------------------------------------------

    async def _consume_events(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._handle_event(event)
            except Exception:
                _log.exception("could not record %s", event)

    async def _handle_event(self, event: VersionEvent) -> None:
        served = self._served.get(event.model_name)
        if served is None or event.version not in served.versions:
            return  # a late event of a version that is gone
        await self._set_version(
            event.model_name,
            served,
            event.version,
            event.state,
            event.state_message,
            worker_pid=event.worker_pid,
        )
        if event.event_type:
            await self._event(event.model_name, event.event_type, event.message, event.version)
        if self._metrics is not None:
            self._metrics.worker_event(event.model_name, event.version, event.event_type)
            if event.state == VersionState.READY:
                self._metrics.version_serving(event.model_name, event.version)
        await self._publish(event.model_name, served)

    # -- helpers -----------------------------------------------------------------------------

    async def _set_version(
        self,
        name: str,
        served: _Served,
        version: str,
        state: VersionState,
        message: str,
        worker_pid: int | None = None,
        files: str | None = None,
    ) -> None:
        """``files``: where its files are, under the models dir (kept for the next start)."""
        message = self._shown(message)
        served.versions[version] = (state, message)
        extra: dict[str, object] = {"worker_pid": worker_pid}
        if files is not None:
            extra["files"] = files
        await asyncio.to_thread(self._store.put_version, name, version, state, message, **extra)

    def _files(self, path: Path) -> str | None:
        """``path`` under the models dir, as stored (None: somewhere else)."""
        try:
            return path.relative_to(self._models_dir).as_posix()
        except ValueError:
            return None

    async def _publish(self, name: str, served: _Served) -> None:
        """Route to the versions as they are now, and record the endpoint's status (and each
        traffic ref that stops or starts taking traffic)."""
        routes = self._publish_routes(name, served)
        unready = routes.unready_refs()
        if served.starting:
            states = [state for state, _ in served.versions.values()]
            if not states or any(state in _UNDERWAY for state in states):
                unready = {}  # say nothing until the start-up has settled
            else:
                served.starting = False
        for event_type, message in readiness_notices(served.traffic, served.unready_refs, unready):
            await self._event(name, event_type, message)
        served.unready_refs = set(unready)
        state, message = self._endpoint_status(name, served)
        await asyncio.to_thread(self._store.set_endpoint_state, name, state, message)

    def _publish_routes(self, name: str, served: _Served) -> ModelRoutes:
        snapshot = served.snapshot
        stages = {v.version: v.stage for v in snapshot.versions} if snapshot else {}
        versions = {
            v: ServedVersion(
                v, stages.get(v, "None"), state, message, self._backend.target(name, v)
            )
            for v, (state, message) in served.versions.items()
        }
        aliases = dict(snapshot.aliases) if snapshot else {}
        routes = ModelRoutes(name, versions, aliases, served.traffic)
        self._router.publish(routes)
        return routes

    def _endpoint_status(self, name: str, served: _Served) -> tuple[EndpointState, str]:
        """The endpoint's state and message, from its versions' states."""
        state, message = endpoint_state(served.versions)
        if served.snapshot is None and not served.registry_down:
            message = f"Registered model '{name}' does not exist in the registry. " + message
        if served.update_failed is not None:
            message += (
                f" The last cluster update failed ({served.update_failed[1]}); "
                f"serving with {_describe(served.config)}."
            )
        return state, self._shown(message)

    async def _event(
        self,
        name: str,
        event_type: str,
        message: str,
        version: str | None = None,
        principal: str | None = None,
    ) -> None:
        message = self._shown(message)
        # Names, tags and messages come from callers: one event, one log line.
        at = f" v{log_safe(version)}" if version else ""
        _log.info("%s %s%s: %s", log_safe(name), event_type, at, log_safe(message, _LOG_MESSAGE))
        await asyncio.to_thread(
            self._store.add_event, name, event_type, message, version, principal
        )


def _should_update(served: _Served, desired: ClusterConfig) -> bool:
    """A new desired config, no update running, and not one that just failed."""
    if served.config == desired or served.update is not None:
        return False
    return served.update_failed is None or served.update_failed[0] != desired


def _replaced_while_off(endpoint: EndpointRecord | None, created: int | None) -> bool:
    """Whether ``endpoint`` was served for a registered model that was deleted while it was
    not served and created again since (its creation time is not ``created`` any more)."""
    if endpoint is None or endpoint.enabled or not created or not endpoint.model_created_at:
        return False
    return endpoint.model_created_at != created


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _pointed_at(snapshot: ModelSnapshot, info: VersionInfo) -> bool:
    return info.stage in ("Staging", "Production") or info.version in snapshot.aliases.values()


def _start_order(
    snapshot: ModelSnapshot | None, called: dict[str, int], version: str
) -> tuple[bool, int, int]:
    """Versions a stage or alias points at first, then those called lately (the most recent
    first), then the newest: the backend's ``StartPriority``."""
    info = snapshot.version(version) if snapshot is not None else None
    if snapshot is None or info is None:
        return (True, -called.get(version, 0), -int(version))
    return (not _pointed_at(snapshot, info), -called.get(version, 0), -info.creation_timestamp)


def _with_order(
    spec: VersionSpec, snapshot: ModelSnapshot | None, called: dict[str, int]
) -> VersionSpec:
    """``spec`` with what orders its workers' starts (from the registry as now)."""
    info = snapshot.version(spec.version) if snapshot is not None else None
    if snapshot is None or info is None:
        return spec
    return dataclasses.replace(
        spec,
        pointed_at=_pointed_at(snapshot, info),
        registered_at=info.creation_timestamp,
        called_at=called.get(spec.version, 0),
    )


def _active_versions(snapshot: ModelSnapshot | None) -> set[str]:
    if snapshot is None:
        return set()
    return {v.version for v in snapshot.versions if v.stage != "Archived" and v.status == "READY"}


def _removal_reason(snapshot: ModelSnapshot | None, version: str) -> str:
    if snapshot is None:
        return "the registered model was deleted"
    for v in snapshot.versions:
        if v.version == version:
            return "it was archived" if v.stage == "Archived" else f"its status is {v.status}"
    return "it was deleted from the registry"


def _by(actor: str | None) -> str:
    return f" by '{actor}'" if actor else ""


def _describe(config: ClusterConfig) -> str:
    tags = ", ".join(f"{k}={v}" for k, v in config.tags)
    return f"node type {config.node_type_id}" + (f", tags {tags}" if tags else "")
