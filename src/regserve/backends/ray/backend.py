"""RayBackend: every served version is one Ray Serve application with one deployment.

A version's application (``naming.py``) holds one deployment of
:class:`~regserve.worker.replica.ScoringReplica` with the version's runtime_env
(``runtime_env.py``) and its replicas and resources from the cluster config (``replica_plan.py``).
One application per version, not per model: Serve redeploys an application as a whole, and a
new version must not restart the replicas of the versions already serving.

States come from Serve: a watcher reads ``serve.status()`` every half second while versions
are deployed and reports each change (``status.py``) as a :class:`VersionEvent`. The gateway
reaches a READY version through its :class:`~.target.RayTarget` (a DeploymentHandle).

Across a restart on a cluster regserve did not start (``--ray-address``) the applications keep
running, and the next process adopts those that are still what it would deploy
(``adoption.py``); a Ray instance regserve started itself stops with it, and its versions are
deployed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from regserve.backends.base import Adopted, VersionEvent, VersionListener, VersionSpec
from regserve.backends.inputs import input_limits
from regserve.backends.local.kept_logs import KeptLog, keep, log_times, prune, read_kept
from regserve.backends.local.logs import read_tail, retire_logs
from regserve.backends.local.paths import WorkerPaths, log_dir_for
from regserve.backends.options import BatchSettings, ClusterOptions
from regserve.backends.ray.adoption import Mark, RunningApp, fingerprint, owner_of, running_apps
from regserve.backends.ray.cluster import RayCluster, reclaim_signals, shipped_package
from regserve.backends.ray.files import FileSigner, ReplicaFiles
from regserve.backends.ray.idle import IdleRayTarget, idle_event
from regserve.backends.ray.logs import read_ray_logs
from regserve.backends.ray.naming import app_name, deployment_name
from regserve.backends.ray.placement import placement_problem
from regserve.backends.ray.replica_plan import ReplicaPlan, plan_replicas
from regserve.backends.ray.runtime_env import index_options, runtime_env_for, shown_options
from regserve.backends.ray.status import ServeView, version_state
from regserve.backends.ray.target import RayTarget
from regserve.errors import InvalidParameterError, RegServeError
from regserve.nodes import NodeType
from regserve.sandbox import NETWORK_TAG
from regserve.sandbox.environ import ModelEnvError, read_model_env
from regserve.settings import Settings
from regserve.states import VersionState
from regserve.store import ClusterConfig

__all__ = ["RayBackend"]

_log = logging.getLogger("regserve.ray")
_T = TypeVar("_T")
_WATCH_SECONDS = 0.5
_FOLLOWERS_GRACE_SECONDS = 2.0
"""Seconds between a served version leaving the routing table and its application's deletion.
Follower gateways reload the table every second (at once when notified) and keep a handle
until then; a request sent through a handle to a deleted application waits for a replica
until its deadline (504), where one sent before the deletion is answered (Serve drains)."""


@dataclass
class _Deployment:
    """What a version is deployed with: ``Deployment.options`` (its mark as the
    ``user_config``) and the replica's arguments."""

    plan: ReplicaPlan
    runtime_env: dict[str, Any]
    notes: list[str]
    options: dict[str, Any]
    args: tuple[Any, ...]
    mark: Mark


@dataclass
class _Version:
    spec: VersionSpec
    app: str
    state: VersionState = VersionState.LAUNCHING
    message: str = ""
    ever_ready: bool = False
    replicas: int = -1
    target: IdleRayTarget | None = None
    submitting: bool = False
    submitted: bool = False
    task: asyncio.Task[None] | None = None
    plan: ReplicaPlan | None = None
    unplaceable: bool = False
    """FAILED because no node can hold a replica (``placement.py``): still watched, and
    deployed again when its cluster config changes."""

    @property
    def label(self) -> str:
        return f"Version {self.spec.version} of '{self.spec.model_name}'"


class RayBackend:
    """Served versions as Ray Serve deployments (``--backend ray``)."""

    def __init__(
        self,
        settings: Settings,
        listener: VersionListener,
        node_types: Mapping[str, NodeType],
        sign_files: FileSigner,
    ) -> None:
        """``sign_files``: makes the credentials replicas fetch their version's files with."""
        self._settings = settings
        self._data_dir = settings.resolved_data_dir()
        self._model_env_dir = settings.model_env_dir or self._data_dir / "model-env"
        self._listener = listener
        self._node_types = node_types
        self._files = ReplicaFiles(settings, sign_files)
        self._uv_options = index_options(settings)
        self._cluster = RayCluster(
            settings.ray_address,
            self._data_dir,
            ship_package=settings.env_manager == "virtualenv",
        )
        self._versions: dict[tuple[str, str], _Version] = {}
        self._owner = owner_of(settings)
        self._offered: set[tuple[str, str]] = set()
        """Versions the controller offered to :meth:`adopt`: it wants them served."""
        self._calls: set[asyncio.Future[Any]] = set()
        """Serve calls running in threads (see :meth:`_serve_call`)."""
        self._clusters: dict[str, ClusterConfig] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        # Building a Serve deployment is not thread-safe (Serve registers and unregisters a
        # module with cloudpickle, process-wide): one at a time.
        self._building = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start (or connect to) Ray in the background: the gateway, the registry and the UI
        answer at once, and versions wait in LAUNCHING until Ray is up. Once per lead:
        :meth:`environment_settled` may have begun it."""
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect(), name="ray connect")

    async def prewarm(self, model_name: str, flavors: Mapping[str, object]) -> None:
        """Nothing: a replica's runtime_env is built by Ray when it is deployed."""

    async def environment_settled(self) -> None:
        """Starting a local Ray instance hides regserve's secrets from the environment
        (``RayCluster._start_local``): begin it now and wait for it (its failure is reported
        where versions wait for Ray). Connecting to a cluster changes nothing."""
        if self._cluster.address:
            return
        await self.start()
        assert self._connecting is not None
        with contextlib.suppress(Exception):
            await asyncio.shield(self._connecting)

    async def _connect(self) -> None:
        started = time.monotonic()
        try:
            await asyncio.to_thread(self._cluster.connect)
        except Exception:
            _log.exception("Ray could not be started or reached; versions will be FAILED")
            raise
        reclaim_signals()
        _log.info("Ray and Serve ready in %.1f s", time.monotonic() - started)
        self._watcher = asyncio.create_task(self._watch(), name="ray serve status")

    async def _ray_ready(self) -> None:
        """Wait for Ray; RegServeError with Ray's reason when it could not start."""
        if self._connecting is None:
            raise RegServeError("The Ray backend was not started.")
        try:
            await asyncio.shield(self._connecting)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            where = self._cluster.address or "a local Ray instance on 127.0.0.1"
            raise RegServeError(
                f"Ray could not be started or reached ({where}): {type(exc).__name__}: {exc}"
            ) from exc

    async def adopt(self, model_name: str, version: str, model_path: Path) -> Adopted | None:
        """Take over the version's application if a previous process left it running with
        the mark this process would deploy it with (``adoption.py``) and Serve says it serves:
        READY at once, the same replicas. None: deploy it (again)."""
        key = (model_name, version)
        self._offered.add(key)
        if key in self._versions or self._connecting is None:
            return None
        try:
            await self._ray_ready()
        except RegServeError:
            return None  # deploying says why
        spec = VersionSpec(model_name, version, model_path)
        try:
            found = await self._serve_call(self._adoptable, spec)
        except Exception:  # the Serve controller unreachable...: deploy as usual
            _log.exception("could not look for %s on Ray Serve", app_name(model_name, version))
            return None
        if found is None:
            return None
        entry, running = found
        self._versions[key] = entry
        replicas = ", ".join(running.replica_ids) or "none running: scaled to zero"
        self._note(spec, f"Ray Serve application {entry.app} adopted (replicas {replicas}).")
        return Adopted(
            None,
            described=f"Ray Serve application {entry.app} ({len(running.replica_ids)} "
            f"replica(s): {replicas})",
        )

    def _adoptable(self, spec: VersionSpec) -> tuple[_Version, RunningApp] | None:
        """The version's running application, made READY, if it may be adopted (blocking)."""
        from ray import serve

        entry = _Version(spec, app_name(spec.model_name, spec.version))
        running = running_apps().get(entry.app)
        if running is None or running.mark is None:
            return None
        config = self._clusters.get(spec.model_name) or ClusterConfig("local-default")
        options = ClusterOptions.of(config, self._settings)
        try:
            _refuse_isolation(options)  # a tag Ray cannot honour: deploying fails with why
            wanted = self._deployment(spec, options).mark
        except (RegServeError, ModelEnvError):
            return None
        if not wanted.fingerprint or running.mark != wanted:
            _log.info("%s differs from what would be deployed now: deploying it", entry.app)
            return None
        view = _view(serve.status(), entry)
        state, message = version_state(view, was_ready=True)
        if state != VersionState.READY:
            return None
        handle = serve.get_deployment_handle(deployment_name(spec.version), app_name=entry.app)
        entry.target = IdleRayTarget(handle, entry.label, entry.app, deployment_name(spec.version))
        entry.state, entry.message, entry.ever_ready = state, message, True
        entry.replicas, entry.submitted = view.running_replicas, True
        entry.target.idle = view.running_replicas == 0
        return entry, running

    async def release_leftovers(self) -> None:
        """Delete the applications this installation's previous process left that this one
        did not want (versions archived, models disabled while it was down). Applications of
        another installation, or with no mark, are not touched."""
        if self._connecting is None or not self._cluster.address:
            return  # a Ray instance started here: it holds only this process's applications
        from ray import serve

        try:
            await self._ray_ready()
            running = await self._serve_call(running_apps)
        except Exception as exc:
            _log.warning("could not look for leftover Serve applications: %s", exc)
            return
        for app in running.values():
            mark = app.mark
            if mark is None or mark.owner != self._owner:
                continue
            key = (mark.model, mark.version)
            if key in self._offered or key in self._versions:
                continue
            _log.info("deleting the Serve application %s: no longer served", app.name)
            await self._serve_call(serve.delete, app.name)

    async def close(self, keep_workers: bool = False) -> None:
        """Delete every application regserve made; with ``keep_workers``, on a cluster
        regserve did not start, leave them running for the next process to adopt (a Ray
        instance started here stops with this process, and its applications with it). No
        grace for the other gateways here: nothing serves these versions after this."""
        if keep_workers and self._cluster.address:
            await asyncio.gather(*(_settle(v) for v in self._versions.values()))
            self._versions.clear()
        await asyncio.gather(*(self._undeploy(m, v, 0) for m, v in list(self._versions)))
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._connecting is not None:
            with contextlib.suppress(Exception):
                await self._connecting  # a thread cannot be cancelled: let it finish
            self._connecting = None  # a next lead connects again
        await asyncio.gather(*self._calls, return_exceptions=True)
        await asyncio.to_thread(self._cluster.shutdown)

    async def _serve_call(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call(*args)`` in a thread, which :meth:`close` waits for before it disconnects
        even when the caller was cancelled (a thread cannot be): a Serve call made after
        ``ray.shutdown()`` would start a local Ray instance (Serve's client calls
        ``ray.init()`` when Ray is not initialized), which this process's exit would orphan."""
        future = asyncio.ensure_future(asyncio.to_thread(call, *args))
        self._calls.add(future)
        future.add_done_callback(self._calls.discard)
        return await asyncio.shield(future)

    async def start_cluster(self, model_name: str, config: ClusterConfig) -> None:
        """Keep the config; a changed one is applied to the running versions at once (Serve
        updates replica counts and autoscaling in place, and rolls replicas for resources)."""
        previous = self._clusters.get(model_name)
        self._clusters[model_name] = config
        if previous is None or previous == config:
            return
        for version in [v for (m, _), v in self._versions.items() if m == model_name]:
            if version.submitted and (version.state != VersionState.FAILED or version.unplaceable):
                await self._submit(version)

    async def stop_cluster(self, model_name: str) -> None:
        keys = [k for k in self._versions if k[0] == model_name]
        await asyncio.gather(*(self.undeploy(m, v) for m, v in keys))
        self._clusters.pop(model_name, None)

    # -- versions ----------------------------------------------------------------------------

    async def deploy(self, spec: VersionSpec) -> None:
        key = (spec.model_name, spec.version)
        if key in self._versions:
            return
        version = _Version(spec, app_name(spec.model_name, spec.version))
        self._versions[key] = version
        self._emit(version, VersionState.LAUNCHING, "Deploying on Ray Serve.")
        version.task = asyncio.create_task(self._submit(version), name=f"ray deploy {key}")

    async def undeploy(self, model_name: str, version: str) -> None:
        await self._undeploy(model_name, version, _FOLLOWERS_GRACE_SECONDS)
        if (model_name, version) not in self._versions:  # not deployed again meanwhile
            await asyncio.to_thread(self._keep_log, model_name, version)

    async def _undeploy(self, model_name: str, version: str, grace: float) -> None:
        entry = self._versions.pop((model_name, version), None)
        if entry is None:
            return
        if entry.task is not None and not entry.task.done():
            if not entry.submitting:
                entry.task.cancel()
            # Serve is being asked already (a thread, which cannot be stopped): let it finish,
            # so that the application is deleted after it was created, not before.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await entry.task
        if not (entry.submitting or entry.submitted):
            return
        from ray import serve

        if entry.ever_ready:
            await asyncio.sleep(grace)  # the other gateways stop routing to it first
            if (model_name, version) in self._versions:
                # Deployed again meanwhile (re-enabled): the application is the new one's now.
                return
        # Serve stops the replicas gracefully: in-flight requests finish first.
        await asyncio.to_thread(serve.delete, entry.app)
        self._note(entry.spec, f"Ray Serve application {entry.app} deleted.")
        await asyncio.to_thread(self._copy_ray_logs, model_name, version)

    def _copy_ray_logs(self, model_name: str, version: str) -> None:
        """Ray's logs of a deleted application are read from Ray's session (on its nodes),
        which a later Ray does not show: their newest lines go to the version's own log."""
        with contextlib.suppress(OSError), self.log_file(model_name, version).open("a") as log:
            log.write(f"{self._ray_logs(model_name, version)}\n")

    def _keep_log(self, model_name: str, version: str) -> None:
        """A version no longer served keeps its log, as the local backend's do
        (``backends/local/kept_logs.py``)."""
        path = self.log_file(model_name, version)
        keep(path, self._settings.kept_log_bytes)
        prune(path.parent, self._settings.kept_logs, self.deployed(model_name))

    def target(self, model_name: str, version: str) -> RayTarget | None:
        entry = self._versions.get((model_name, version))
        return entry.target if entry is not None and entry.state == VersionState.READY else None

    def describe_cluster(self, model_name: str) -> str:
        """The cluster's per-replica resources and replica count, for its events."""
        config = self._clusters.get(model_name) or ClusterConfig("local-default")
        plan = plan_replicas(ClusterOptions.of(config, self._settings), self._node_types)
        return f"Ray Serve, {plan.describe()}"

    def forget_model(self, model_name: str) -> None:
        retire_logs(self._data_dir, model_name)

    def isolation_warning(self) -> str:
        return (
            "On Ray, replicas run in Ray's worker processes, as the user Ray runs as: they get "
            "none of regserve's secrets (their environment is Ray's, started without them), "
            "but regserve cannot give them a user of their own, a process cap or no network "
            "(docs/scale-out.md#what-ray-isolates)."
        )

    def deployed(self, model_name: str) -> set[str]:
        return {v for m, v in self._versions if m == model_name}

    def log_file(self, model_name: str, version: str) -> Path:
        path = WorkerPaths.for_version(self._data_dir, model_name, version).log
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def read_logs(self, model_name: str, version: str) -> str:
        own = read_tail(self.log_file(model_name, version), max_lines=500)
        ray_logs = self._ray_logs(model_name, version)
        return f"{own}\n{ray_logs}" if own else ray_logs

    def _ray_logs(self, model_name: str, version: str) -> str:
        return read_ray_logs(
            self._cluster.logs_dir(),
            app_name(model_name, version),
            with_env_build=self._settings.env_manager == "virtualenv",
        )

    def kept_log(self, model_name: str, version: str) -> KeptLog | None:
        folder = log_dir_for(self._data_dir, model_name)
        return read_kept(folder, version, max_lines=2000, max_bytes=1024 * 1024)

    def log_times(self, model_name: str) -> dict[str, int]:
        return log_times(log_dir_for(self._data_dir, model_name))

    # -- deploying ---------------------------------------------------------------------------

    async def _submit(self, version: _Version) -> None:
        spec = version.spec
        config = self._clusters.get(spec.model_name) or ClusterConfig("local-default")
        options = ClusterOptions.of(config, self._settings)
        try:
            _refuse_isolation(options)
            await self._ray_ready()
            # in a thread: the first deployment of a version reads its files (their fingerprint)
            deployment = await asyncio.to_thread(self._deployment, spec, options)
            for note in deployment.notes:
                self._note(spec, note)
            runtime_env = deployment.runtime_env
            shown = _shown(runtime_env)
            self._note(
                spec,
                f"deploying as Ray Serve application {version.app}: "
                f"{deployment.plan.describe()}; runtime_env {shown or 'none'}",
            )
            version.submitting, version.plan = True, deployment.plan
            handle = await asyncio.to_thread(self._run_app, deployment)
        except RegServeError as exc:
            self._fail(version, exc.message)
            return
        except ModelEnvError as exc:
            self._fail(version, f"The model's env file cannot be used: {exc}")
            return
        except Exception as exc:  # Serve refused the application (bad options, no cluster...)
            _log.exception("deploying %s on Ray Serve failed", version.app)
            self._fail(version, f"Ray Serve refused the deployment: {type(exc).__name__}: {exc}")
            return
        version.target = IdleRayTarget(
            handle, version.label, version.app, deployment_name(spec.version)
        )
        version.submitted = True

    def _deployment(self, spec: VersionSpec, options: ClusterOptions) -> _Deployment:
        """What the version is deployed with now (Ray connected: the runtime_env names the
        package uploaded to it). Raises ModelEnvError for an env file that cannot be used."""
        plan = plan_replicas(options, self._node_types)
        batching: BatchSettings = options.batching
        model_env = read_model_env(self._model_env_dir, spec.model_name)
        runtime_env, notes = runtime_env_for(
            spec.model_path,
            self._settings.env_manager,
            shipped_package(),
            model_env,
            self._uv_options,
        )
        deployment_options = plan.deployment_options()
        if runtime_env:
            deployment_options["ray_actor_options"]["runtime_env"] = runtime_env
        deployment_options.update(
            name=deployment_name(spec.version),
            # The first request to a deployment scaled to zero waits for a replica to load.
            health_check_period_s=10,
            graceful_shutdown_timeout_s=self._settings.request_timeout,
        )
        args = (
            self._files.source(spec).to_json(),  # the replica fetches the files: worker/fetch.py
            spec.model_name,
            spec.version,
            batching.mode,
            batching.max_batch_size,
            batching.max_batch_wait_ms,
            "ray.serve",
            input_limits(self._settings).to_json(),
        )
        digest = fingerprint(deployment_options, args, spec.model_path)
        mark = Mark(self._owner, spec.model_name, spec.version, digest)
        deployment_options["user_config"] = mark.to_user_config()
        return _Deployment(plan, runtime_env, notes, deployment_options, args, mark)

    def _run_app(self, deployment: _Deployment) -> Any:
        from ray import serve
        from ray.serve.api import RunTarget

        from regserve.worker.replica import ScoringReplica

        with self._building:
            wrapped: Any = serve.deployment(ScoringReplica)  # Serve's overloads hide Deployment
            application = wrapped.options(**deployment.options).bind(*deployment.args)
            mark = deployment.mark
            run = RunTarget(application, name=app_name(mark.model, mark.version), route_prefix=None)
            handles = serve.run_many([run], wait_for_applications_running=False)
            return handles[0]

    # -- watching Serve ----------------------------------------------------------------------

    async def _watch(self) -> None:
        import ray
        from ray import serve

        while True:
            await asyncio.sleep(_WATCH_SECONDS)
            watched = [
                v
                for v in self._versions.values()
                if v.submitted and (v.state != VersionState.FAILED or v.unplaceable)
            ]
            if not watched:
                continue
            nodes: list[dict[str, Any]] | None = None
            try:
                status = await self._serve_call(serve.status)
                views = [_view(status, v) for v in watched]
                if any(not view.settled for view in views):  # can they be placed at all?
                    nodes = await self._serve_call(ray.nodes)
            except Exception as exc:  # the Serve controller restarting: try again next turn
                _log.warning("could not read Ray Serve's status: %s", exc)
                continue
            for version, view in zip(watched, views, strict=True):
                if self._versions.get(_key(version)) is version:
                    self._observe(version, view, nodes)

    def _observe(
        self, version: _Version, view: ServeView, nodes: list[dict[str, Any]] | None = None
    ) -> None:
        indexes = " ".join(shown_options(self._uv_options))
        state, message = version_state(view, was_ready=version.ever_ready, indexes=indexes)
        problem = None
        if nodes is not None and version.plan is not None and not view.settled:
            problem = placement_problem(version.plan, nodes)
        version.unplaceable = problem is not None and state == VersionState.LAUNCHING
        if problem is not None and version.unplaceable:
            state, message = VersionState.FAILED, problem
        elif problem is not None and state == VersionState.READY:  # the old replicas serve on
            message = f"{message.rstrip('.')}; the new cluster config cannot be placed: {problem}"
        number = version.spec.version
        event_type, text = "", ""
        if state == VersionState.READY and version.state != VersionState.READY:
            if version.ever_ready:
                event_type = "WORKER_RESTARTED"
                text = f"Ray Serve is serving version {number} again."
            else:
                event_type = "VERSION_READY"
                text = f"Version {number} is ready on Ray Serve (application {version.app})."
            version.ever_ready = True
        elif state == VersionState.READY and version.replicas != view.running_replicas:
            event_type, text = idle_event(number, version.replicas, view.running_replicas) or (
                "REPLICAS_SCALED",
                f"Ray Serve scaled version {number} from {max(version.replicas, 0)} to "
                f"{view.running_replicas} replicas.",
            )
        elif state == VersionState.LAUNCHING and version.state == VersionState.READY:
            event_type, text = "WORKER_CRASHED", message
        elif state == VersionState.FAILED and (state, message) != (version.state, version.message):
            event_type, text = "VERSION_FAILED", message
        version.replicas = view.running_replicas
        if version.target is not None:  # list-versions' loaded and idle_reason
            version.target.idle = state == VersionState.READY and view.running_replicas == 0
        if (state, message) != (version.state, version.message) or event_type:
            self._emit(version, state, message, event_type, text)

    # -- helpers -----------------------------------------------------------------------------

    def _fail(self, version: _Version, message: str) -> None:
        self._note(version.spec, message)
        self._emit(version, VersionState.FAILED, message, "VERSION_FAILED", message)

    def _emit(
        self,
        version: _Version,
        state: VersionState,
        message: str,
        event_type: str = "",
        text: str = "",
    ) -> None:
        version.state, version.message = state, message
        spec = version.spec
        self._listener(
            VersionEvent(spec.model_name, spec.version, state, message, event_type, text)
        )

    def _note(self, spec: VersionSpec, line: str) -> None:
        """A line in the version's own log (what regserve asked Ray for, and why)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with (
            contextlib.suppress(OSError),
            self.log_file(spec.model_name, spec.version).open("a") as log,
        ):
            log.write(f"{stamp} [regserve] {line}\n")


async def _settle(version: _Version) -> None:
    """Let a submission under way finish (Serve is being asked in a thread), or stop one that
    has not asked yet: the application is left as it is, for the next process."""
    task = version.task
    if task is None or task.done():
        return
    if not version.submitting:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _shown(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """The runtime_env for the version's log: the names of the model's variables, not their
    values, and no password of an index URL."""
    shown = dict(runtime_env)
    if shown.get("env_vars"):
        shown["env_vars"] = sorted(shown["env_vars"])
    uv = shown.get("uv")
    if isinstance(uv, dict) and uv.get("uv_pip_install_options"):
        shown["uv"] = {**uv, "uv_pip_install_options": shown_options(uv["uv_pip_install_options"])}
    return shown


def _key(version: _Version) -> tuple[str, str]:
    return version.spec.model_name, version.spec.version


def _view(status: Any, version: _Version) -> ServeView:
    """The part of ``serve.status()`` about one version, as plain strings."""
    app = status.applications.get(version.app)
    if app is None:
        return ServeView(None)
    deployment = app.deployments.get(deployment_name(version.spec.version))
    if deployment is None:
        return ServeView(str(app.status.value), app.message or "")
    replicas = deployment.replica_states or {}
    return ServeView(
        str(app.status.value),
        app.message or "",
        str(deployment.status.value),
        deployment.message or "",
        int(replicas.get("RUNNING", 0)),
    )


def _refuse_isolation(options: ClusterOptions) -> None:
    """What the local backend's sandbox does and Ray cannot: refused, not silently dropped."""
    if not options.network:
        raise InvalidParameterError(
            f"{NETWORK_TAG}=none is not available with --backend ray: Ray starts replicas in "
            "its own worker processes, which regserve cannot put in a network namespace "
            "(docs/scale-out.md#what-ray-isolates)."
        )
