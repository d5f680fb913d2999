"""A shared worker: several versions of one registered model, that share an environment, in one
process on one socket (``python -m regserve.worker --shared``).

The supervisor loads and unloads versions with ``LOAD`` and ``UNLOAD`` frames on a control
connection; each version's gateway connection starts with ``BIND`` and from then on carries
only that version's requests, so the hot path is the one-model path (no per-request lookup).
Each version keeps its own :class:`~regserve.worker.server.WorkerServer` (batcher, batching
settings, predict threads). A model loads on a thread while the others keep answering; a model
that fails to load is reported in the ``REPLY`` and leaves the others alone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path

from regserve.worker import protocol, wire
from regserve.worker.limits import InputLimits
from regserve.worker.loading import load_model, mlflow_1_handler
from regserve.worker.server import (
    DEFAULT_MAX_BATCH_SIZE,
    FrameConnection,
    WorkerServer,
    describe,
)
from regserve.worker.text import log_safe

__all__ = ["SharedServer"]

_logger = logging.getLogger("regserve.worker")


class SharedServer:
    """Hosts the versions the supervisor loads, each answered on the connections bound to it."""

    def __init__(
        self, name: str | None, *, threads: int, grace_seconds: float, peer_uid: int | None = None
    ) -> None:
        self.name = name
        self.peer_uid = peer_uid
        """Only this uid (and root) may connect (:mod:`.peers`); None: anyone."""
        self.models: dict[str, WorkerServer] = {}
        self.state = "ready"
        self._threads = threads
        self._grace_seconds = grace_seconds
        self._connections: set[asyncio.Transport] = set()
        self._unloaded: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Event | None = None

    async def serve(self, socket_path: Path) -> None:
        """Listen on ``socket_path`` and answer until stopped; then drain every model."""
        self._stopping = asyncio.Event()
        _remove(socket_path)
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(
            lambda: _SharedConnection(self), path=str(socket_path)
        )
        _logger.info("shared worker listening on %s", socket_path)
        try:
            await self._stopping.wait()
        finally:
            server.close()
            await asyncio.gather(*(m.drain() for m in self.models.values()))
            for transport in list(self._connections):
                transport.close()
            _remove(socket_path)
            _logger.info("stopped")

    @property
    def connections(self) -> set[asyncio.Transport]:
        """The open connections (the orphan watch counts them)."""
        return self._connections

    def stop(self) -> None:
        self.state = "stopping"
        if self._stopping is not None:
            self._stopping.set()

    def pong(self) -> wire.Pong:
        info = describe(self.name, None, self.state)
        info["shared"] = True
        info["versions"] = {v: m.state for v, m in self.models.items()}
        return info

    def control(self, frame: wire.Frame, reply: Callable[[int, wire.Reply], None]) -> None:
        """Run a LOAD or UNLOAD in the background; ``reply(request_id, answer)`` when done."""

        async def run() -> None:
            answer: wire.Reply
            try:
                if frame.kind == wire.Kind.LOAD:
                    answer = await self.load(wire.decode_load(frame.payload))
                else:
                    answer = await self.unload(frame.payload.decode("utf-8"))
            except Exception as exc:  # a bad control frame must not stop the others
                _logger.exception("control frame failed")
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            reply(frame.request_id, answer)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def load(self, request: wire.Load) -> wire.Reply:
        version = str(request["version"])
        if version in self.models:
            return {"ok": True, "error": ""}
        self._unloaded.discard(version)
        _logger.info(
            "v%s: loading model from %s", log_safe(version), log_safe(request["model_path"])
        )
        started = time.monotonic()
        limits = InputLimits.from_json(request.get("limits"))
        try:
            model = await asyncio.to_thread(load_model, str(request["model_path"]))
            server = WorkerServer(
                model,
                name=self.name,
                version=version,
                threads=self._threads,
                grace_seconds=self._grace_seconds,
                batching=str(request.get("batching", "auto")),
                max_batch_size=int(request.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)),
                max_batch_wait=float(request.get("max_batch_wait_ms", 0)) / 1000,
                handler=mlflow_1_handler(model, limits),
                limits=limits,
            )
        except Exception as exc:
            _logger.exception("v%s: model failed to load", version)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if version in self._unloaded:  # unloaded while it loaded (it took too long)
            return {"ok": False, "error": "unloaded while loading"}
        self.models[version] = server
        _logger.info("v%s: model loaded in %.2f s", version, time.monotonic() - started)
        _refreeze()
        return {"ok": True, "error": ""}

    async def unload(self, version: str) -> wire.Reply:
        self._unloaded.add(version)
        server = self.models.pop(version, None)
        if server is not None:
            await server.drain()
            del server
            _refreeze()
            _logger.info("v%s: unloaded", version)
        return {"ok": True, "error": ""}


def _remove(path: Path) -> None:
    # One unlink syscall: not worth a thread, even on the event loop.
    path.unlink(missing_ok=True)


def _refreeze() -> None:
    """Keep long-lived objects out of the collector's walks (as a one-model worker does), but
    let an unloaded model's cycles be collected first."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class _SharedConnection(FrameConnection):
    """Unbound: the control connection (PING, LOAD, UNLOAD). After BIND: one version's."""

    def __init__(self, host: SharedServer) -> None:
        super().__init__(host._connections, host.peer_uid)
        self._host = host
        self._version: str | None = None

    def dispatch(self, frame: wire.Frame) -> None:
        kind = frame.kind
        if kind == wire.Kind.REQUEST:
            server = self._host.models.get(self._version) if self._version else None
            if server is None or server.state != "ready":
                message = f"Version {self._version} is not loaded in this worker."
                self.answer(
                    frame.request_id,
                    protocol.error_response(503, "TEMPORARILY_UNAVAILABLE", message),
                )
            else:
                self.submit(server, frame)
        elif kind == wire.Kind.PING:
            self.write(wire.encode_pong(frame.request_id, self._pong()))
        elif kind == wire.Kind.BIND:
            self._version = frame.payload.decode("utf-8")
        elif kind in (wire.Kind.LOAD, wire.Kind.UNLOAD):
            self._host.control(frame, self._reply)
        else:
            _logger.warning("ignoring a %s frame", kind.name)

    def _pong(self) -> wire.Pong:
        if self._version is None:
            return self._host.pong()
        server = self._host.models.get(self._version)
        if server is None:
            return describe(self._host.name, self._version, "not loaded")
        return server.pong()

    def _reply(self, request_id: int, answer: wire.Reply) -> None:
        self.write(wire.encode_reply(request_id, answer))
