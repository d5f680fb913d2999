"""Wires settings, store, registry, backend, controller and gateway; runs them under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

from regserve.auth import ensure_admin_token
from regserve.auth.management import AccessManager
from regserve.auth.service import AccessService
from regserve.backends.base import Backend, VersionEvent, VersionListener
from regserve.backends.local import LocalBackend
from regserve.backends.local.addresses import LocalTargets
from regserve.changes import change_feed_for
from regserve.controller.fenced import FencedController
from regserve.controller.follower import SharedRouter, TargetCodec
from regserve.envs import EnvironmentManager
from regserve.errors import RegServeError
from regserve.gateway import Gateway, Services
from regserve.gateway.registry_guard import RegistryLookups
from regserve.gateway.webhooks import WEBHOOK_PATH
from regserve.gateways import GatewayNode
from regserve.leader import leader_lock_for
from regserve.metrics import ControlMetrics, TrafficRecorder
from regserve.nodes import NodeTypes, load_node_types
from regserve.registry.webhooks import WebhookVerifier, ensure_secret, register_webhook
from regserve.settings import Settings
from regserve.store import StateStore

__all__ = ["RegServe", "serve"]

_log = logging.getLogger("regserve")
_METRICS_FLUSH_SECONDS = 15.0
DEMO_MODEL = "iris-classifier"


class RegServe:
    """One regserve process: everything but the HTTP server that runs the gateway."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        node_types = load_node_types(settings.node_types_file)  # NodeTypesError: a bad file
        data_dir = settings.resolved_data_dir()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token, self.token_created = ensure_admin_token(settings.admin_token, data_dir)
        self.store = StateStore(settings.store_uri or f"sqlite:///{data_dir / 'state.db'}")
        self.gateway_id = f"{settings.host}:{settings.port}/{os.getpid()}"
        self.changes = change_feed_for(self.store, self.gateway_id)
        registry_app, reader, self._hosted_uri = _registry(settings)
        self._reader = reader
        self.webhook_secret = ensure_secret(settings.webhook_secret, data_dir)
        self.access = AccessService(settings, self.store, self.admin_token)
        self.access.on_change = self.changes.publish
        self.manager = AccessManager(settings, self.store, self.access, self._model_exists)
        self.router = SharedRouter(self.store, _targets(settings), self.changes)
        self.recorder = TrafficRecorder()
        self.control_metrics = ControlMetrics(self.recorder.registry)
        self._events: asyncio.Queue[VersionEvent] = asyncio.Queue()
        self.backend = _backend(settings, self._events.put_nowait, node_types)
        # Ray builds and caches each version's environment itself (its runtime_env).
        uv_envs = settings.env_manager == "virtualenv" and settings.backend == "local"
        envs = EnvironmentManager(settings) if uv_envs else None
        self.controller = FencedController(
            settings, self.store, reader, self.backend, self.router, self._events,
            node_types.api(), envs, metrics=self.control_metrics,
            leading=lambda: self.node.leading, changes=self.changes,
        )  # fmt: skip
        self.node = GatewayNode(
            self.gateway_id, self.store, leader_lock_for(self.store.uri, data_dir), self.changes,
            self.router, self.controller, self.access, self._prepare_to_lead,
        )  # fmt: skip
        services = Services(
            settings, self.store, self.controller, self.router, self.backend, self.recorder,
            self.access, self.manager, self.control_metrics,
            WebhookVerifier(self.webhook_secret, settings.webhook_tolerance),
            reader, self.node,
        )  # fmt: skip
        lookups = RegistryLookups(self._stage_of, self._sources_naming)
        self.gateway = Gateway(services, registry_app, lookups)
        self._tasks: list[asyncio.Task[None]] = []

    async def startup(self) -> None:
        await asyncio.to_thread(self.store.migrate)
        await asyncio.to_thread(self.access.bootstrap)
        await self.node.elector.check()  # alone on its database, this process leads at once
        for coro, name in self.node.loops():
            self._spawn(coro, name)
        self._spawn(self._flush_metrics(), "metrics flush")

    async def _prepare_to_lead(self) -> None:
        """Elected: take the backend over (stop workers a dead leader left) and sync."""
        await self.backend.start()
        await self.controller.forget_previous_run()
        await self._register_webhook()

    async def shutdown(self) -> None:
        await self.node.stop()  # the controller stops while this process still holds the lock
        await self.controller.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.store.add_metrics, self.recorder.drain())
        self.store.close()

    async def install_demo(self, base_url: str) -> None:
        """Register the demo model through the running server (first start) and serve it."""
        from regserve.registry.demo import ensure_demo_model

        await asyncio.to_thread(ensure_demo_model, base_url, self.admin_token)
        endpoint = await asyncio.to_thread(self.store.get_endpoint, DEMO_MODEL)
        if endpoint is None:
            await self.controller.enable(DEMO_MODEL)

    async def _model_exists(self, name: str) -> bool:
        return await asyncio.to_thread(self._reader.snapshot, name) is not None

    async def _stage_of(self, name: str, version: str) -> str | None:
        snapshot = await asyncio.to_thread(self._reader.snapshot, name)
        found = [v for v in snapshot.versions if v.version == version] if snapshot else []
        return found[0].stage if found else None

    async def _sources_naming(self, owner_id: str) -> list[tuple[str, str]]:
        return await asyncio.to_thread(self._reader.sources_naming, owner_id)

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
            await asyncio.to_thread(self.store.add_metrics, self.recorder.drain())


def _targets(settings: Settings) -> TargetCodec:
    """How a follower gateway turns the leader's stored addresses into targets."""
    if settings.backend == "ray":
        from regserve.backends.ray.addresses import RayTargets

        return RayTargets()
    return LocalTargets()


def _backend(settings: Settings, listener: VersionListener, node_types: NodeTypes) -> Backend:
    """The backend ``settings.backend`` names (Ray is imported only when asked for)."""
    if settings.backend == "ray":
        from regserve.backends.ray import RayBackend

        return RayBackend(settings, listener, node_types.api())
    return LocalBackend(settings, listener, node_types)


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
    """Run regserve until SIGINT or SIGTERM."""
    app = RegServe(settings)
    base_url = f"http://{settings.host}:{settings.port}"
    await app.startup()
    config = uvicorn.Config(
        app.gateway, host=settings.host, port=settings.port, lifespan="off",
        log_level="warning", access_log=False, timeout_graceful_shutdown=15,
    )  # fmt: skip
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_exit)
    serving = asyncio.create_task(server.serve(), name="uvicorn")
    try:
        while not server.started:
            if serving.done():
                await serving  # raises the bind error
                return
            await asyncio.sleep(0.05)
        _announce(app, settings, base_url, announce)
        # Everything built so far (MLflow's server, FastAPI, SQLAlchemy) lives as long as the
        # process: kept out of the collector, a full collection no longer stalls the gateway.
        gc.freeze()
        if settings.demo:
            try:
                await app.install_demo(base_url)
                announce(f"Demo model '{DEMO_MODEL}' registered and served.")
            except RegServeError as exc:
                announce(f"Could not install the demo model: {exc.message}")
        await serving
    finally:
        await app.shutdown()


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling: it re-raises SIGTERM once it has stopped, which
    would kill this process before the workers are stopped. ``serve`` installs ours."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        self.should_exit = True


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
