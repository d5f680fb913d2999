"""The worker's socket server: wire frames in, scoring answers out, on one asyncio loop.

Requests go through the batcher (:mod:`.batcher`). Batched models predict on the loop, one batch
at a time; other models run off the loop in a small thread pool (their predict may sleep or do
I/O), so PING is answered at once while they predict. Answers go back as soon as they are
ready, so they may leave in another order than the requests came.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from regserve.worker import protocol, wire
from regserve.worker.batcher import Batcher, BatchRunner, batchable_by_default
from regserve.worker.limits import InputLimits
from regserve.worker.peers import peer_allowed

Handler = Callable[[bytes, str | None], wire.Response]
"""Answers one request: (body, content type) -> response. Never raises."""

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BATCH_WAIT",
    "DEFAULT_THREADS",
    "FrameConnection",
    "WorkerServer",
    "describe",
]

DEFAULT_THREADS = 4
DEFAULT_GRACE_SECONDS = 10.0
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_BATCH_WAIT = 0.0

_logger = logging.getLogger("regserve.worker")


def describe(name: str | None, version: str | None, state: str) -> wire.Pong:
    """The PONG payload: who this worker is and whether it serves."""
    from mlflow.version import VERSION as mlflow_version

    return {
        "pid": os.getpid(),
        "state": state,
        "name": name,
        "version": version,
        "protocol": wire.PROTOCOL_VERSION,
        "mlflow_version": mlflow_version,
        "python": platform.python_version(),
    }


class WorkerServer:
    """Serves one loaded model on a Unix socket until :meth:`stop` (or SIGTERM, see __main__).

    ``batching`` is ``auto`` (batch models of a row-wise flavor, see :mod:`.batcher`), ``on``
    or ``off``. Batches run one at a time on the event loop (a PING waits for the batch in
    progress); unbatched requests run ``threads`` at a time on a thread pool.
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        version: str | None = None,
        threads: int = DEFAULT_THREADS,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        batching: str = "auto",
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_wait: float = DEFAULT_MAX_BATCH_WAIT,
        handler: Handler | None = None,
        limits: InputLimits = protocol.DEFAULT_LIMITS,
        peer_uid: int | None = None,
    ) -> None:
        input_schema = model.metadata.get_input_schema()
        self.batched = (
            handler is None
            and max_batch_size > 1
            and (batching == "on" or (batching == "auto" and batchable_by_default(model)))
        )
        run: Callable[[Sequence[tuple[bytes, str | None]]], list[wire.Response]]
        self._runner: BatchRunner | None = None
        if self.batched:
            self._runner = BatchRunner(model, input_schema, limits)
            run = self._runner.run
        else:
            one = handler or partial(
                protocol.handle, model=model, input_schema=input_schema, limits=limits
            )
            run = partial(_handle_each, handler=one)
        self.name = name
        self.version = version
        self.state = "ready"
        self.grace_seconds = grace_seconds
        self.peer_uid = peer_uid
        """Only this uid (and root) may connect (:mod:`.peers`); None: anyone."""
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="predict")
        # Batches run on the event loop: predicting holds the GIL anyway, and a hand-off to a
        # pool thread costs a wake-up per batch and GIL ping-pong with the loop (~20% of the
        # throughput in the bench). Requests that arrive meanwhile wait in the socket buffer,
        # which is where they would wait for the batch anyway. Unbatched models (which may
        # sleep or do I/O) keep running `threads` requests at once on the pool.
        self._batcher = Batcher(
            run,
            None if self.batched else self._executor,
            max_batch_size=max_batch_size if self.batched else 1,
            max_wait=max_batch_wait if self.batched else 0.0,
            concurrency=1 if self.batched else threads,
        )
        self._inflight: set[asyncio.Future[wire.Response]] = set()
        self._connections: set[asyncio.Transport] = set()
        self._stopping: asyncio.Event | None = None

    async def serve(self, socket_path: Path) -> None:
        """Listen on ``socket_path`` (replacing a stale file) and answer until stopped."""
        self._stopping = asyncio.Event()
        _remove(socket_path)
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(lambda: _Connection(self), path=str(socket_path))
        _logger.info("listening on %s", socket_path)
        try:
            await self._stopping.wait()
        finally:
            await self._shutdown(server, socket_path)

    @property
    def connections(self) -> set[asyncio.Transport]:
        """The open connections (the orphan watch counts them)."""
        return self._connections

    def stop(self) -> None:
        """Begin a graceful stop: no new connections, in-flight requests finish (bounded)."""
        self.state = "stopping"
        if self._stopping is not None:
            self._stopping.set()

    def pong(self) -> wire.Pong:
        info = describe(self.name, self.version, self.state)
        info["batching"] = {
            "enabled": self.batched,
            "max_batch_size": self._batcher.max_batch_size,
            "max_batch_wait": self._batcher.max_wait,
            "batches": self._batcher.batches,
            "requests": self._batcher.requests,
            "combined_predicts": self._runner.combined_predicts if self._runner else 0,
            # For the gateway's /metrics (read at scrape time, nothing per request).
            "batch_sizes": self._batcher.batch_sizes,
            "queued": self._batcher.queued,
            "in_flight": len(self._inflight),
        }
        return info

    def submit(self, content_type: str | None, body: bytes) -> asyncio.Future[wire.Response]:
        future = self._batcher.submit(content_type, body)
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)
        return future

    async def drain(self) -> None:
        """Stop serving this model: finish its in-flight requests (up to ``grace_seconds``),
        then release its predict threads."""
        self.state = "stopping"
        if self._inflight:
            _logger.info("stopping: finishing %d in-flight requests", len(self._inflight))
            _, pending = await asyncio.wait(set(self._inflight), timeout=self.grace_seconds)
            if pending:
                _logger.warning("stopping: %d requests did not finish in time", len(pending))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _shutdown(self, server: asyncio.AbstractServer, socket_path: Path) -> None:
        server.close()
        await self.drain()
        for transport in list(self._connections):
            transport.close()
        _remove(socket_path)
        _logger.info("stopped")


def _remove(path: Path) -> None:
    # One unlink syscall: not worth a thread, even on the event loop.
    path.unlink(missing_ok=True)


def _handle_each(
    requests: Sequence[tuple[bytes, str | None]], *, handler: Handler
) -> list[wire.Response]:
    return [handler(body, ct) for body, ct in requests]


class FrameConnection(asyncio.Protocol):
    """One gateway connection: frames in, answers out under each request's id. What a frame
    means is the subclass's (:meth:`dispatch`); :class:`_Connection` serves one model."""

    def __init__(self, connections: set[asyncio.Transport], peer_uid: int | None) -> None:
        self._connections = connections
        self._peer_uid = peer_uid
        self._reader = wire.FrameReader()
        self._transport: asyncio.Transport | None = None
        self._outbox: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not peer_allowed(transport.get_extra_info("socket"), self._peer_uid):
            transport.abort()
            return
        self._transport = transport
        self._connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        while True:
            try:
                for frame in self._reader.feed(data):
                    self.dispatch(frame)
                return
            except wire.UnknownKindError as exc:  # skipped: go on with the frames after it
                _logger.warning("ignoring a frame: %s", exc)
                data = b""

    def dispatch(self, frame: wire.Frame) -> None:
        raise NotImplementedError

    def submit(self, server: WorkerServer, frame: wire.Frame) -> None:
        """Queue a REQUEST frame into ``server``'s batcher; answer when it is done."""
        try:
            request = wire.decode_request(frame.payload)
        except (struct.error, UnicodeDecodeError):
            response = protocol.error_response(400, "BAD_REQUEST", "Malformed request frame.")
            self.answer(frame.request_id, response)
            return
        future = server.submit(request.content_type, request.body)
        future.add_done_callback(partial(self._done, frame.request_id))

    def _done(self, request_id: int, future: asyncio.Future[wire.Response]) -> None:
        if future.cancelled():
            response = protocol.error_response(
                503, "TEMPORARILY_UNAVAILABLE", "The worker stopped before answering."
            )
        elif (error := future.exception()) is not None:
            # protocol.handle answers every Exception itself; this is a last resort.
            _logger.error("request handler failed", exc_info=error)
            response = protocol.error_response(500, "INTERNAL_ERROR", type(error).__name__)
        else:
            response = future.result()
        self.answer(request_id, response)

    def answer(self, request_id: int, response: wire.Response) -> None:
        self.write(wire.encode_response(request_id, *response))

    def write(self, data: bytes) -> None:
        # The answers of a batch are ready together: they leave in one write (one syscall).
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(data)

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


class _Connection(FrameConnection):
    """A connection to a worker serving one model."""

    def __init__(self, server: WorkerServer) -> None:
        super().__init__(server._connections, server.peer_uid)
        self._server = server

    def dispatch(self, frame: wire.Frame) -> None:
        if frame.kind == wire.Kind.REQUEST:
            self.submit(self._server, frame)
        elif frame.kind == wire.Kind.PING:
            self.write(wire.encode_pong(frame.request_id, self._server.pong()))
        else:
            _logger.warning("ignoring a %s frame", frame.kind.name)
