"""WorkerClient: the gateway's multiplexed connection to one worker's Unix socket."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

from regserve.errors import DeadlineExceededError, UnavailableError
from regserve.worker import wire

__all__ = ["WorkerClient"]


class _Connection(asyncio.Protocol):
    def __init__(self, on_lost: Any) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[tuple[wire.Kind, bytes]]] = {}
        self.overdue: dict[int, float] = {}
        """Requests whose caller got a 504 but the worker still works on: id -> since when."""
        self._reader = wire.FrameReader()
        self._on_lost = on_lost
        self._outbox: list[bytes] = []

    def send(self, frame: bytes) -> None:
        """Queue a frame; the frames queued in one loop turn go out in one write (syscall)."""
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(frame)

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self._reader.feed(data):
                future = self.pending.pop(frame.request_id, None)
                if future is not None and not future.done():
                    future.set_result((frame.kind, frame.payload))
                elif future is None:
                    self.overdue.pop(frame.request_id, None)  # a late answer: the worker is free
        except wire.UnknownKindError:
            # A worker of another protocol: its requests in flight fail as on a lost connection
            # (and are sent again, to a worker that is restarted meanwhile).
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("worker connection lost"))
        self.pending.clear()
        self.overdue.clear()
        self._on_lost(self)


class _Expired(Exception):
    """The request timeout passed before the worker answered."""


def _expire(future: asyncio.Future[tuple[wire.Kind, bytes]]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class WorkerClient:
    """Sends framed requests to a worker; many in flight on one kept-open connection.

    ``bind`` (a version) makes it a connection to that version in a shared worker: every new
    connection starts with a BIND frame, and then carries only that version's requests.
    """

    def __init__(self, socket_path: str, label: str, bind: str | None = None) -> None:
        self.socket_path = socket_path
        self.label = label
        self.bind = bind
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._ids = itertools.count(1)

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            conn = self._conn
            if conn is not None and conn.transport is not None and not conn.transport.is_closing():
                return conn
            loop = asyncio.get_running_loop()
            try:
                _, protocol = await loop.create_unix_connection(
                    lambda: _Connection(self._lost), self.socket_path
                )
            except OSError as exc:
                raise UnavailableError(
                    f"{self.label} is not reachable ({exc}); retry shortly."
                ) from None
            if self.bind is not None:  # the first frame on the connection
                protocol.send(wire.encode_frame(0, wire.Kind.BIND, self.bind.encode("utf-8")))
            self._conn = protocol
            return protocol

    def _lost(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None

    async def _exchange(
        self, frame_kind: wire.Kind, build: Any, timeout: float
    ) -> tuple[wire.Kind, bytes]:
        conn = await self._connection()
        request_id = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[wire.Kind, bytes]] = loop.create_future()
        conn.pending[request_id] = future
        conn.send(build(request_id))
        # A timer handle rather than asyncio.wait_for: the same deadline for less work per call.
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        except _Expired:
            conn.pending.pop(request_id, None)
            if frame_kind == wire.Kind.REQUEST:
                conn.overdue[request_id] = loop.time()
            raise DeadlineExceededError(
                f"{self.label} did not answer within {timeout:g} s (the request timeout)."
            ) from None
        except ConnectionError:
            raise UnavailableError(
                f"{self.label} stopped while answering; it is being restarted. Retry shortly.",
                sent=True,
            ) from None
        finally:
            timer.cancel()

    async def request(self, content_type: str | None, body: bytes, timeout: float) -> wire.Response:
        _, payload = await self._exchange(
            wire.Kind.REQUEST, lambda rid: wire.encode_request(rid, content_type, body), timeout
        )
        return wire.decode_response(payload)

    async def ping(self, timeout: float = 2.0) -> wire.Pong:
        _, payload = await self._exchange(
            wire.Kind.PING, lambda rid: wire.encode_frame(rid, wire.Kind.PING, b""), timeout
        )
        return wire.decode_pong(payload)

    async def load(self, load: wire.Load, timeout: float) -> wire.Reply:
        """Load a version in a shared worker; its REPLY."""
        _, answer = await self._exchange(
            wire.Kind.LOAD, lambda rid: wire.encode_load(rid, load), timeout
        )
        return wire.decode_reply(answer)

    async def unload(self, version: str, timeout: float) -> wire.Reply:
        """Unload a version from a shared worker (once its requests are answered); its REPLY."""
        payload = version.encode("utf-8")
        _, answer = await self._exchange(
            wire.Kind.UNLOAD, lambda rid: wire.encode_frame(rid, wire.Kind.UNLOAD, payload), timeout
        )
        return wire.decode_reply(answer)

    def overdue_for(self) -> float:
        """How long the oldest request the worker was given up on (a 504) has been overdue,
        in seconds; 0 when it answered them all."""
        conn = self._conn
        if conn is None or not conn.overdue:
            return 0.0
        return asyncio.get_running_loop().time() - min(conn.overdue.values())

    def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None
