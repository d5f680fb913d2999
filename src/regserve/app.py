"""Wires settings, store, registry, backend, controller and gateway; runs them under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

from regserve.auth import ensure_admin_token
from regserve.auth.management import AccessManager
from regserve.auth.service import AccessService
from regserve.backends.base import Backend, VersionEvent, VersionListener
from regserve.backends.local import LocalBackend
from regserve.backends.local.addresses import LocalTargets
from regserve.console import DemoProgress, curl_command
from regserve.envs import EnvironmentManager
from regserve.errors import RegServeError
from regserve.gateway import Gateway, Services
from regserve.gateway.connections import ConnectionLimits, protocol_class
from regserve.gateway.registry_guard import RegistryLookups
from regserve.gateway.webhooks import WEBHOOK_PATH
from regserve.gateway.worker_stats import BatchTally
from regserve.gateways.changes import change_feed_for
from regserve.gateways.fenced import FencedController
from regserve.gateways.follower import SharedRouter, TargetCodec
from regserve.gateways.leader import leader_lock_for
from regserve.gateways.node import GatewayNode
from regserve.inference.tables import InferenceTables
from regserve.metrics import ControlMetrics, TrafficRecorder
from regserve.nodes import NodeTypes, load_node_types
from regserve.registry.deferred import DeferredReader
from regserve.registry.demo import DemoModelError
from regserve.registry.webhooks import WebhookVerifier, ensure_secret, register_webhook
from regserve.restart.drain import DrainGate
from regserve.restart.listener import listening_socket, reexec
from regserve.restart.pidfile import remove_pidfile, write_pidfile
from regserve.restart.signals import MODE_BY_SIGNAL, ExitMode
from regserve.sandbox import Isolation
from regserve.settings import Settings
from regserve.store import StateStore
from regserve.ui import install_ui

__all__ = ["RegServe", "serve"]

_log = logging.getLogger("regserve")
_METRICS_FLUSH_SECONDS = 15.0
_IDLE_GRACE = 1.0
"""How long a stop lets keep-alive clients send one more request (answered with
``Connection: close``) before their idle connections are closed."""
DEMO_MODEL = "iris-classifier"
_DEMO_POLL = 0.2
"""Seconds between looks for the demo model in the registry while it is being registered."""


class RegServe:
    """One regserve process: everything but the HTTP server that runs the gateway."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        node_types = load_node_types(settings.node_types_file)  # NodeTypesError: a bad file
        data_dir = settings.resolved_data_dir()
        data_dir.mkdir(parents=True, exist_ok=True)
        # First: the data dir locked down, and what regserve creates private from the start.
        self.isolation = Isolation(settings, data_dir)  # IsolationUnavailableError: "on"
        self.isolation.start()
        self.admin_token, self.token_created = ensure_admin_token(settings.admin_token, data_dir)
        self.store = StateStore(settings.store_uri or f"sqlite:///{data_dir / 'state.db'}")
        self.gateway_id = f"{settings.host}:{settings.port}/{os.getpid()}"
        self.changes = change_feed_for(self.store, self.gateway_id)
        # Made ready in the background once listening (start_registry): importing MLflow and
        # creating its database take seconds; until then its routes answer 503.
        self._reader = reader = DeferredReader()
        self._hosted_uri: str | None = None
        self.webhook_secret = ensure_secret(settings.webhook_secret, data_dir)
        self.access = AccessService(settings, self.store, self.admin_token)
        self.access.on_change = self.changes.publish
        self.manager = AccessManager(settings, self.store, self.access, self._model_exists)
        self.router = SharedRouter(self.store, _targets(settings), self.changes)
        self.recorder = TrafficRecorder()
        self.control_metrics = ControlMetrics(self.recorder.registry)
        self.batches = BatchTally(self.router, self.recorder)
        self.tables = InferenceTables.build(settings, self.store, self.recorder.registry)
        self._events: asyncio.Queue[VersionEvent] = asyncio.Queue()
        self.backend = _backend(
            settings, self._events.put_nowait, node_types, self.isolation, self.access
        )
        if isinstance(self.backend, LocalBackend):
            budget = settings.memory_budget
            self.control_metrics.watch_memory(
                self.backend.memory, int(budget) if budget is not None else None
            )
        # Ray builds and caches each version's environment itself (its runtime_env).
        uv_envs = settings.env_manager == "virtualenv" and settings.backend == "local"
        envs = EnvironmentManager(settings, self.isolation) if uv_envs else None
        self.controller = FencedController(
            settings,
            self.store,
            reader,
            self.backend,
            self.router,
            self._events,
            node_types.api(),
            envs,
            metrics=self.control_metrics,
            registry_ready=reader.wait_ready,
            leading=lambda: self.node.leading,
            changes=self.changes,
        )
        self.node = GatewayNode(
            self.gateway_id,
            self.store,
            leader_lock_for(self.store.uri, data_dir),
            self.changes,
            self.router,
            self.controller,
            self.access,
            self._prepare_to_lead,
        )
        services = Services(
            settings,
            self.store,
            self.controller,
            self.router,
            self.backend,
            self.recorder,
            self.access,
            self.manager,
            self.control_metrics,
            WebhookVerifier(self.webhook_secret, settings.webhook_tolerance),
            reader,
            self.node,
            boot_id=uuid.uuid4().hex,
            started_at=int(time.time() * 1000),
            starting=self._starting,
            batches=self.batches,
            capture=self.tables.capture,
            tables=self.tables.storage,
        )
        lookups = RegistryLookups(self._stage_of, self._sources_naming, self._artifact_root)
        hosting = not settings.registry_uri
        self.gateway = Gateway(services, lookups if hosting else None, extensions=(install_ui,))
        self._tasks: list[asyncio.Task[None]] = []

    async def startup(self) -> None:
        """What must be done before listening: regserve's own tables, the admin, the lead.
        The workers a previous process left answer from the stored routing table at once
        (``SharedRouter.route_stored``); the controller adopts them once the registry is
        ready (:meth:`start_registry`, after listening)."""
        await asyncio.to_thread(self.store.migrate)
        await asyncio.to_thread(self.access.bootstrap)
        await self.node.elector.check()  # alone on its database, this process leads at once
        for coro, name in self.node.loops():
            self._spawn(coro, name)
        self._spawn(self._flush_metrics(), "metrics flush")
        self.tables.writer.start()
        self._spawn(self.tables.follow(self.store), "inference table settings")

    async def start_registry(self) -> None:
        """Import MLflow and make the registry ready (the hosted server: create or migrate its
        database, build its app), in a thread; then mount it and let the controller start."""
        if self.settings.registry_start_delay:
            await asyncio.sleep(self.settings.registry_start_delay)
        if self.node.leading:  # before MLflow's configuration enters the environment
            await self.backend.environment_settled()
        app, reader, self._hosted_uri = await asyncio.to_thread(_registry, self.settings)
        if app is not None:
            self.gateway.attach_registry(app)
        self._reader.attach(reader)
        if self.node.leading:
            await self._register_webhook()

    def _starting(self) -> list[str]:
        """What is still starting, for /health: the registry; then, leading, the controller's
        first pass (which adopts the workers a previous process left); following, the routes
        to versions this gateway cannot reach yet (on Ray: until connected to the cluster)."""
        starting = [] if self._reader.ready else ["registry"]
        if self.node.leading and not self.controller.first_pass.is_set():
            starting.append("controller")
        if self.router.unreached:
            starting.append("routes")
        return starting

    def worker_count(self) -> int:
        """Worker processes the routing table reaches (replicas of every served version)."""
        codec = _targets(self.settings)
        return sum(
            len(codec.addresses(served.target))
            for routes in self.router.all()
            for served in routes.versions.values()
            if served.target is not None
        )

    async def _prepare_to_lead(self) -> None:
        """Elected: take the backend over (find the workers a previous leader left, to adopt
        them) and sync."""
        self.controller.first_pass.clear()
        await self.backend.start()
        await self.controller.forget_previous_run()
        if self._reader.ready:  # else once it is (start_registry)
            await self._register_webhook()
        self._spawn(self._release_leftovers(), "release leftover workers")

    async def _release_leftovers(self) -> None:
        """Once the controller's first pass has adopted what it wants of the workers a
        previous process left, stop the rest."""
        await self.controller.first_pass.wait()
        await self.backend.release_leftovers()

    async def shutdown(self, keep_workers: bool = False) -> None:
        await self.node.stop()  # the controller stops while this process still holds the lock
        await self.controller.shutdown(keep_workers)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.store.add_metrics, self.recorder.drain())
        await asyncio.to_thread(self.tables.writer.stop)  # what was captured is written
        self.store.close()

    async def install_demo(self, base_url: str, announce: Callable[[str], None]) -> None:
        """Register the demo model through the running server (first start), serve it, and
        print its steps on the console, ending with a curl that scores it."""
        from regserve.registry.demo import FLAVORS, looks_complete

        progress = DemoProgress(self.store, announce)
        endpoint = await asyncio.to_thread(self.store.get_endpoint, DEMO_MODEL)
        needed = endpoint is None
        if needed:
            progress.say("registering", "registering the demo model...")
        else:  # a restart: nothing to register, most likely; nothing to compete with the start
            await self._reader.wait_ready()
            needed = not looks_complete(await asyncio.to_thread(self._reader.snapshot, DEMO_MODEL))
        if needed:
            registering = asyncio.ensure_future(self._register_demo(base_url))
            if endpoint is None:
                if self.node.leading:  # its libraries imported while the model registers
                    await self.backend.prewarm(DEMO_MODEL, FLAVORS)
                await self._enable_once_created(registering)
            await registering
        if endpoint is None:
            await self._reader.wait_ready()
            await self.controller.enable(DEMO_MODEL)  # enabled already, most likely
            await self.controller.reconcile(DEMO_MODEL)  # its stages and alias, before "ready"
        url = f"{_loopback_url(self.settings)}/model/{DEMO_MODEL}/Production/invocations"
        await progress.follow(DEMO_MODEL, "2", curl_command(url, self._authorization()))

    async def _register_demo(self, base_url: str) -> None:
        """Its models (trained by a child process unless prepared: ``make`` did, or an earlier
        start), then, once the registry is ready, registered through this very server."""
        from regserve.registry.demo import prepare_in_child, register_in_background

        models = await prepare_in_child(self.settings.demo_cache_dir)
        await self._reader.wait_ready()
        try:
            await register_in_background(base_url, self.admin_token, models)
        except RegServeError:
            raise
        except Exception as exc:  # MLflow's errors, the registry unreachable: said, not raised
            raise DemoModelError(f"registering the demo model failed: {exc}") from exc

    async def _enable_once_created(self, registering: asyncio.Future[None]) -> None:
        """Serve the demo from the moment the registering process created it in the registry:
        version 1's worker (and the model's warm process, whose imports take seconds) start
        while version 2 is being logged."""
        await self._reader.wait_ready()
        while not registering.done():
            # A failure here is met again by the enable once it is registered, and said then.
            with contextlib.suppress(RegServeError):
                if await asyncio.to_thread(self._reader.snapshot, DEMO_MODEL) is not None:
                    await self.controller.enable(DEMO_MODEL)
                    return
            await asyncio.wait({registering}, timeout=_DEMO_POLL)

    def _authorization(self) -> str:
        """The admin token's Authorization header as a shell reads it (never the secret)."""
        if self.settings.admin_token:
            return "Bearer $REGSERVE_ADMIN_TOKEN"
        return f"Bearer $(cat {self.settings.resolved_data_dir() / 'admin-token'})"

    async def _model_exists(self, name: str) -> bool:
        return await asyncio.to_thread(self._reader.snapshot, name) is not None

    async def _stage_of(self, name: str, version: str) -> str | None:
        snapshot = await asyncio.to_thread(self._reader.snapshot, name)
        found = snapshot.version(version) if snapshot else None
        return found.stage if found else None

    async def _sources_naming(self, owner_id: str) -> list[tuple[str, str]]:
        return await asyncio.to_thread(self._reader.sources_naming, owner_id)

    async def _artifact_root(self, kind: str, object_id: str) -> str | None:
        return await asyncio.to_thread(self._reader.artifact_root, kind, object_id)

    async def _register_webhook(self) -> None:
        """Hosting the registry: point its webhook at this gateway (a failure only logs)."""
        if self._hosted_uri is None or not self.settings.register_webhook:
            return
        url = f"{_loopback_url(self.settings)}{WEBHOOK_PATH}"
        try:
            await asyncio.to_thread(register_webhook, self._hosted_uri, url, self.webhook_secret)
        except RegServeError as exc:
            _log.warning("%s; new versions are picked up by polling only", exc.message)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def guarded() -> None:
            await coro

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(_METRICS_FLUSH_SECONDS)
            await self.batches.sample()
            await asyncio.to_thread(self.store.add_metrics, self.recorder.drain())


def _targets(settings: Settings) -> TargetCodec:
    """How a follower gateway turns the leader's stored addresses into targets."""
    if settings.backend == "ray":
        from regserve.backends.ray.addresses import RayTargets

        return RayTargets(settings.ray_address)
    return LocalTargets()


def _backend(
    settings: Settings,
    listener: VersionListener,
    node_types: NodeTypes,
    isolation: Isolation,
    access: AccessService,
) -> Backend:
    """The backend ``settings.backend`` names (Ray is imported only when asked for)."""
    if settings.backend == "ray":
        from regserve.backends.ray import RayBackend

        return RayBackend(settings, listener, node_types, access.file_grants.issue)
    return LocalBackend(settings, listener, node_types, isolation)


def _registry(settings: Settings) -> tuple[Any, Any, str | None]:
    """MLflow's hosted server app (or None), a reader on the registry, the hosted store URI."""
    if settings.registry_uri:
        from regserve.registry.reader import RegistryReader

        return None, RegistryReader(settings.registry_uri), None
    from regserve.registry.hosted import create_hosted_registry

    hosted = create_hosted_registry(settings.resolved_data_dir())
    return hosted.app, hosted.reader, hosted.backend_store_uri


def _loopback_url(settings: Settings) -> str:
    """How this process reaches its own gateway."""
    host = settings.host
    if host in ("", "0.0.0.0", "localhost"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


async def serve(settings: Settings, announce: Callable[[str], None] = print) -> None:
    """Run regserve until a signal: SIGINT stops everything, SIGTERM leaves the workers for the
    next process, SIGHUP restarts in place (see :mod:`regserve.restart`)."""
    try:  # first: from now on, connections wait in the backlog until regserve answers
        sock = listening_socket(settings)
    except OSError as exc:
        raise SystemExit(
            f"regserve cannot listen on {settings.host}:{settings.port}: {exc}"
        ) from None
    app = RegServe(settings)
    base_url = f"http://{settings.host}:{settings.port}"
    await app.startup()
    gate = DrainGate(app.gateway)
    # Read deadlines and a cap per client address (gateway/connections.py).
    http = protocol_class(ConnectionLimits.from_settings(settings))
    config = uvicorn.Config(
        gate,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=15,
        http=http,
    )
    server = _Server(config, gate, sock)
    loop = asyncio.get_running_loop()
    stopping = _Stopping(app, server, announce)
    for sig, mode in MODE_BY_SIGNAL.items():
        loop.add_signal_handler(sig, stopping.request, mode)
    # uvicorn closes the socket it serves on: give it a duplicate, keep ours for a restart.
    serving = asyncio.create_task(server.serve(sockets=[sock.dup()]), name="uvicorn")
    data_dir = settings.resolved_data_dir()
    tasks: list[asyncio.Task[None]] = []
    try:
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.05)
        write_pidfile(data_dir)
        _announce(app, settings, base_url, announce)
        registry = asyncio.create_task(_start_registry(app, stopping), name="registry start")
        tasks.append(registry)
        if settings.demo:
            # Beside serving, not before it: a signal during the install must not wait for it
            # (its requests to this very server would wait in the backlog of a restart).
            demo = _install_demo(app, _loopback_url(settings), announce)
            tasks.append(asyncio.create_task(demo, name="demo"))
        await serving
    finally:
        for task in tasks:
            task.cancel()
        await app.shutdown(keep_workers=server.mode is not ExitMode.STOP)
    _finish(server.mode, sock, data_dir)
    stopping.done()
    if stopping.failure:
        raise SystemExit(stopping.failure)


async def _start_registry(app: RegServe, stopping: _Stopping) -> None:
    try:
        await app.start_registry()
    except Exception as exc:  # a registry that cannot start: stop, as before listening
        _log.exception("the registry could not start")
        stopping.fail(f"regserve: the registry could not start: {exc}")
        return
    # Everything built so far (MLflow's server, FastAPI, SQLAlchemy) lives as long as the
    # process: kept out of the collector, a full collection no longer stalls the gateway.
    gc.freeze()


async def _install_demo(app: RegServe, base_url: str, announce: Callable[[str], None]) -> None:
    try:
        await app.install_demo(base_url, announce)
    except RegServeError as exc:
        announce(f"Could not install the demo model: {exc.message}")


class _Stopping:
    """The signal handlers' side: says on the console what a stop does, once, then asks
    uvicorn to stop (see :class:`_Server`)."""

    def __init__(self, app: RegServe, server: _Server, announce: Callable[[str], None]) -> None:
        self._app = app
        self._server = server
        self._announce = announce
        self.failure: str | None = None

    def request(self, mode: ExitMode) -> None:
        first = not self._server.should_exit
        if mode is ExitMode.STOP and (first or self._server.mode is not ExitMode.STOP):
            count = self._app.worker_count()
            self._announce(f"stopping: {count} worker{'' if count == 1 else 's'}...")
        self._server.request_exit(mode)

    def fail(self, message: str) -> None:
        self.failure = message
        self._announce(message)
        self._server.request_exit(ExitMode.STOP)

    def done(self) -> None:
        if self._server.mode is ExitMode.STOP:
            self._announce("stopped")


def _finish(mode: ExitMode, sock: socket.socket, data_dir: Any) -> None:
    if mode is ExitMode.RESTART:
        _log.warning("restarting in place (pid %s); the workers keep serving", os.getpid())
        reexec(sock)  # does not return
    remove_pidfile(data_dir)
    sock.close()
    if mode is ExitMode.KEEP_WORKERS:
        _log.info("stopped; the workers keep running for the next start to adopt")


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling (it re-raises SIGTERM once it has stopped, which
    would kill this process before the workers are stopped; ``serve`` installs ours), plus a
    drain that moves keep-alive clients off gently (see :class:`DrainGate`)."""

    def __init__(self, config: uvicorn.Config, gate: DrainGate, sock: socket.socket) -> None:
        super().__init__(config)
        self.gate = gate
        self.listen_socket = sock
        self.mode = ExitMode.STOP

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self, mode: ExitMode = ExitMode.STOP) -> None:
        if not self.should_exit:
            self.mode = mode
        elif mode is ExitMode.STOP:
            self.mode = mode  # Ctrl-C during a drain: stop the workers too
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for listener in self.servers:
            listener.close()
        # Restarting, the socket stays open: new connections wait in the backlog for the new
        # image. Otherwise nobody comes after us: refuse them.
        if self.mode is not ExitMode.RESTART:
            self.listen_socket.close()
        self.gate.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _IDLE_GRACE
        # uvicorn's connections signal nothing when they close: poll, as uvicorn does.
        while self.server_state.connections and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await super().shutdown(sockets)


def _announce(
    app: RegServe, settings: Settings, base_url: str, announce: Callable[[str], None]
) -> None:
    announce(f"regserve is listening on {base_url}")
    if app.token_created:
        announce(
            f"Admin token (shown once; kept in {settings.resolved_data_dir() / 'admin-token'}):"
        )
        announce(f"  {app.admin_token}")
    elif not settings.admin_token:
        announce(f"Admin token: see {settings.resolved_data_dir() / 'admin-token'}")
    if not settings.registry_uri:
        announce(f"MLflow registry: MLFLOW_TRACKING_URI={base_url} MLFLOW_TRACKING_TOKEN=<token>")
    sys.stdout.flush()
