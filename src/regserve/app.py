"""Wires settings, store, registry, backend, controller and gateway; runs them under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
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
from regserve.restart import (
    DrainGate,
    ExitMode,
    listening_socket,
    reexec,
    remove_pidfile,
    write_pidfile,
)
from regserve.settings import Settings
from regserve.store import StateStore

__all__ = ["RegServe", "serve"]

_log = logging.getLogger("regserve")
_METRICS_FLUSH_SECONDS = 15.0
_FIRST_PASS_WAIT = 30.0
"""How long start-up waits for the first pass (which adopts running workers) before serving."""
_IDLE_GRACE = 1.0
"""How long a stop lets keep-alive clients send one more request (answered with
``Connection: close``) before their idle connections are closed."""
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
            boot_id=uuid.uuid4().hex,
            started_at=int(time.time() * 1000),
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
        if self.node.leading:
            # The first pass adopts the workers a previous process left: serve once it is done,
            # so their versions answer at once (bounded: a slow registry must not hold the
            # gateway).
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.controller.first_pass.wait(), _FIRST_PASS_WAIT)

    async def _prepare_to_lead(self) -> None:
        """Elected: take the backend over (find the workers a previous leader left, to adopt
        them) and sync."""
        self.controller.first_pass.clear()
        await self.backend.start()
        await self.controller.forget_previous_run()
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

        return RayTargets(settings.ray_address)
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
    config = uvicorn.Config(
        gate, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=15,
    )  # fmt: skip
    server = _Server(config, gate, sock)
    loop = asyncio.get_running_loop()
    modes = {signal.SIGINT: ExitMode.STOP, signal.SIGTERM: ExitMode.KEEP_WORKERS,
             signal.SIGHUP: ExitMode.RESTART}  # fmt: skip
    for sig, mode in modes.items():
        loop.add_signal_handler(sig, server.request_exit, mode)
    # uvicorn closes the socket it serves on: give it a duplicate, keep ours for a restart.
    serving = asyncio.create_task(server.serve(sockets=[sock.dup()]), name="uvicorn")
    data_dir = settings.resolved_data_dir()
    demo: asyncio.Task[None] | None = None
    try:
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.05)
        write_pidfile(data_dir)
        _announce(app, settings, base_url, announce)
        # Everything built so far (MLflow's server, FastAPI, SQLAlchemy) lives as long as the
        # process: kept out of the collector, a full collection no longer stalls the gateway.
        gc.freeze()
        if settings.demo:
            # Beside serving, not before it: a signal during the install must not wait for it
            # (its requests to this very server would wait in the backlog of a restart).
            demo = asyncio.create_task(_install_demo(app, base_url, announce), name="demo")
        await serving
    finally:
        if demo is not None:
            demo.cancel()
        await app.shutdown(keep_workers=server.mode is not ExitMode.STOP)
    _finish(server.mode, sock, data_dir)


async def _install_demo(app: RegServe, base_url: str, announce: Callable[[str], None]) -> None:
    try:
        await app.install_demo(base_url)
        announce(f"Demo model '{DEMO_MODEL}' registered and served.")
    except RegServeError as exc:
        announce(f"Could not install the demo model: {exc.message}")


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
