"""The gateway's HTTP connections: read deadlines and a cap per client address.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but gives a request as long
as it likes to send its headers and body: a thousand connections trickling header bytes were
all held. :func:`protocol_class` returns uvicorn's own HTTP protocol (httptools, else h11) with
three additions, each a setting (docs/security.md#limits-on-requests):

- **Headers** must be complete ``REGSERVE_HEADER_TIMEOUT`` seconds after the connection opened,
  or after the first byte of a later request on it; else ``408 REQUEST_TIMEOUT`` and closed.
- **A body** may take ``REGSERVE_BODY_TIMEOUT`` seconds, plus one second per
  ``REGSERVE_BODY_MIN_RATE`` bytes received: large uploads at a fair rate go through, a
  trickle does not (408, closed). Time during which regserve itself stopped reading (the
  application has not consumed what came) does not count against the client. Once the answer
  has begun (a refusal sent before the body was read) the connection just closes after it.
- **Connections per client address** beyond ``REGSERVE_MAX_CONNECTIONS_PER_CLIENT`` are
  answered ``429 REQUEST_LIMIT_EXCEEDED`` at once and closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from regserve.errors import RateLimitedError, RegServeError, RequestTimeoutError
from regserve.gateway.errors import render_error
from regserve.settings import Settings

__all__ = ["ConnectionLimits", "protocol_class"]

_log = logging.getLogger("regserve.gateway")
_HEADERS = "headers"
_BODY = "body"


@dataclass(frozen=True)
class ConnectionLimits:
    """What a client connection may take (0: no limit)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    body_min_rate: int = 1024
    max_per_client: int = 256

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.header_timeout,
            settings.body_timeout,
            settings.body_min_rate,
            settings.max_connections_per_client,
        )


class _Clients:
    """Open connections per client address, for one server."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def admit(self, host: str) -> bool:
        if self.limit and self._open[host] >= self.limit:
            return False
        self._open[host] += 1
        return True

    def leave(self, host: str) -> None:
        self._open[host] -= 1
        if self._open[host] <= 0:
            del self._open[host]


class _ReadClock:
    """One connection's read deadline: for its request's headers, then for its body."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits, protocol: Any
    ) -> None:
        self._loop = loop
        self._limits = limits
        self._protocol = protocol  # uvicorn's: transport, flow, cycle
        self._timer: asyncio.TimerHandle | None = None
        self.phase: str | None = None
        self._body_started = 0.0
        self._body_bytes = 0
        self._paused_since: float | None = None
        self._paused_for = 0.0

    def headers(self) -> None:
        """A request (or the connection) began: its headers are on the clock, unless they
        already are."""
        if self.phase != _HEADERS and self._limits.header_timeout:
            self._arm(_HEADERS, self._limits.header_timeout)

    def body(self) -> None:
        """The headers are in; the body is on the clock (once per request)."""
        if self.phase == _BODY:
            return
        self.stop()
        if self._limits.body_timeout:
            self._body_started, self._body_bytes, self._paused_for = self._loop.time(), 0, 0.0
            self._paused_since = None
            self._arm(_BODY, self._limits.body_timeout)

    def received(self, size: int) -> None:
        self._body_bytes += size

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self.phase = None

    def _arm(self, phase: str, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.phase = phase
        self._timer = self._loop.call_later(delay, self._due)

    def _due(self) -> None:
        self._timer = None
        if self.phase == _BODY:
            left = self._body_time_left()
            if left > 0:
                self._arm(_BODY, left)
                return
        elif _answering_previous(self._protocol):
            # A pipelined request waits for the one before it: not the client's fault.
            self._arm(_HEADERS, self._limits.header_timeout)
            return
        phase, self.phase = self.phase, None
        _expire(self._protocol, self._message(phase), during_body=phase == _BODY)

    def _body_time_left(self) -> float:
        now = self._loop.time()
        if bool(getattr(self._protocol.flow, "read_paused", False)):
            # regserve stopped reading (the application has not taken what came): its time.
            self._paused_since = self._paused_since or now
            return self._limits.body_timeout
        if self._paused_since is not None:
            self._paused_for += now - self._paused_since
            self._paused_since = None
        allowed = self._limits.body_timeout + self._body_bytes / self._limits.body_min_rate
        return allowed - (now - self._body_started - self._paused_for)

    def _message(self, phase: str | None) -> str:
        if phase == _HEADERS:
            return (
                f"The request's headers did not arrive within "
                f"{self._limits.header_timeout:g} s (REGSERVE_HEADER_TIMEOUT); the "
                "connection is closed."
            )
        return (
            f"The request body arrived too slowly ({self._body_bytes} bytes in "
            f"{self._loop.time() - self._body_started:.0f} s; past "
            f"{self._limits.body_timeout:g} s it must keep up "
            f"{self._limits.body_min_rate} bytes/s: REGSERVE_BODY_TIMEOUT, "
            "REGSERVE_BODY_MIN_RATE); the connection is closed."
        )


def _answering_previous(protocol: Any) -> bool:
    cycle = protocol.cycle
    return cycle is not None and not cycle.response_complete


def _expire(protocol: Any, message: str, during_body: bool) -> None:
    """A deadline passed: answer 408 and close, or, when the application already answers the
    request whose body is late, close once that answer is out."""
    transport: asyncio.Transport = protocol.transport
    if transport.is_closing():
        return
    cycle = protocol.cycle if during_body else None  # else: the previous request's, answered
    if cycle is not None and cycle.response_started:
        cycle.keep_alive = False  # the answer goes out whole, then the connection closes
        if cycle.response_complete:
            transport.close()
        return
    if cycle is not None:  # the application sees a disconnect; its answer goes nowhere
        cycle.disconnected = True
        cycle.message_event.set()
    _refuse(transport, RequestTimeoutError(message))


def _refuse(transport: asyncio.Transport, error: RegServeError) -> None:
    """Answer ``error`` in raw HTTP/1.1 (no request cycle to answer through) and close."""
    answer = render_error(error)
    lines = [f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}".encode("latin-1")]
    lines += [name + b": " + value for name, value in answer.headers]
    transport.write(b"\r\n".join([*lines, b"connection: close", b"", answer.body]))
    transport.close()


def protocol_class(limits: ConnectionLimits, h11: bool = False) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed, else or with ``h11`` h11) under
    ``limits``; one class per server (it counts that server's connections per client)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        h11 = True
    if h11:
        return _h11_class(limits)
    clients = _Clients(limits.max_per_client)

    class GuardedHttpTools(HttpToolsProtocol):
        _limits: ClassVar[ConnectionLimits] = limits
        _clients: ClassVar[_Clients] = clients
        _host: str | None = None
        _clock: _ReadClock

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._clock = _ReadClock(self.loop, self._limits, self)
            if _admitted(self, self._clients, transport):
                self._clock.headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._clock.stop()
            if self._host is not None:
                self._clients.leave(self._host)
                self._host = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._clock.headers()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._clock.body()

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._clock.received(len(body))

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._clock.stop()

    return GuardedHttpTools


def _h11_class(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    clients = _Clients(limits.max_per_client)

    class GuardedH11(H11Protocol):
        _limits: ClassVar[ConnectionLimits] = limits
        _clients: ClassVar[_Clients] = clients
        _host: str | None = None
        _clock: _ReadClock

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._clock = _ReadClock(self.loop, self._limits, self)
            if _admitted(self, self._clients, transport):
                self._clock.headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._clock.stop()
            if self._host is not None:
                self._clients.leave(self._host)
                self._host = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                self._clock.body()
                self._clock.received(len(data))
            elif state is h11.IDLE:
                self._clock.headers()
            else:
                self._clock.stop()

    return GuardedH11


def _admitted(protocol: Any, clients: _Clients, transport: asyncio.Transport) -> bool:
    """Count the connection for its client address; refuse it (429, closed) over the cap."""
    client = protocol.client
    if client is None:  # a Unix socket: no address to count by
        return True
    host = str(client[0])
    if not clients.admit(host):
        _log.warning("refused a connection from %s: %d open already", host, clients.limit)
        message = (
            f"Too many open connections from {host} (at most {clients.limit}: "
            "REGSERVE_MAX_CONNECTIONS_PER_CLIENT). Reuse connections or close some."
        )
        _refuse(transport, RateLimitedError(message, retry_after=None))
        return False
    protocol._host = host
    return True
