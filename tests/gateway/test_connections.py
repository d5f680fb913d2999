"""The gateway's HTTP protocol under uvicorn, both implementations, over real sockets: slow
headers and bodies get a 408, one address holds a bounded number of connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from regserve.gateway.connections import ConnectionLimits, protocol_class

LIMITS = ConnectionLimits(
    header_timeout=0.5, body_timeout=0.5, body_min_rate=1000, max_per_client=3
)
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _echo_size(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body, answers its size."""
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"size": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(params=["httptools", "h11"])
async def port(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    http = protocol_class(LIMITS, h11=request.param == "h11")
    config = uvicorn.Config(_echo_size, http=http, lifespan="off", log_level="critical")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn signals nothing
        await asyncio.sleep(0.01)
    yield int(sock.getsockname()[1])
    server.should_exit = True
    await serving


@pytest.fixture
async def streams() -> AsyncIterator[list[Stream]]:
    """Every connection a test opens, closed after it."""
    opened: list[Stream] = []
    yield opened
    for _, writer in opened:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _open(port: int, streams: list[Stream]) -> Stream:
    stream = await asyncio.open_connection("127.0.0.1", port)
    streams.append(stream)
    return stream


async def _waiting(stream: Stream, seconds: float) -> bytes:
    """What the server sent within ``seconds`` (nothing: b"")."""
    try:
        return await asyncio.wait_for(stream[0].read(65536), seconds)
    except asyncio.TimeoutError:
        return b""


async def _answer(stream: Stream, timeout: float = 5.0) -> bytes:
    with contextlib.suppress(ConnectionResetError):
        return await asyncio.wait_for(stream[0].read(), timeout)
    return b""


def _request(body: bytes) -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body


async def test_a_prompt_request_is_answered(port: int, streams: list[Stream]) -> None:
    stream = await _open(port, streams)
    stream[1].write(_request(b"x" * 10_000))
    line = await asyncio.wait_for(stream[0].readline(), 5)
    assert line.startswith(b"HTTP/1.1 200"), line


async def test_headers_that_do_not_come_get_a_408(port: int, streams: list[Stream]) -> None:
    loop = asyncio.get_running_loop()
    stream = await _open(port, streams)
    started = loop.time()
    stream[1].write(b"GET /x HTTP/1.1\r\nHost:")  # and then nothing
    answer = await _answer(stream)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"REQUEST_TIMEOUT"' in answer
    assert b"REGSERVE_HEADER_TIMEOUT" in answer
    assert 0.4 < loop.time() - started < 3


async def test_a_kept_alive_connection_gets_the_header_clock_again(
    port: int, streams: list[Stream]
) -> None:
    stream = await _open(port, streams)
    stream[1].write(_request(b"abc"))
    assert (await asyncio.wait_for(stream[0].readline(), 5)).startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.8)  # longer than the header timeout: idle is not slow
    stream[1].write(b"GET /y HTTP/1.1\r\n")  # the next request's first bytes, then nothing
    answer = await _answer(stream)
    assert b"HTTP/1.1 408" in answer, answer


async def test_a_trickled_body_gets_a_408_and_a_fair_one_does_not(
    port: int, streams: list[Stream]
) -> None:
    stream = await _open(port, streams)
    stream[1].write(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
    answer = b""
    for _ in range(30):  # 20 bytes a second, until the server answers
        answer = await _waiting(stream, 0.1)
        if answer:
            break
        stream[1].write(b"xx")
    answer += await _answer(stream)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"REGSERVE_BODY_MIN_RATE" in answer
    # 2000 bytes a second for 1.5 s: three times the body timeout, at twice the minimum rate.
    fair = await _open(port, streams)
    fair[1].write(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\n")
    for _ in range(15):
        fair[1].write(b"x" * 200)
        await asyncio.sleep(0.1)
    line = await asyncio.wait_for(fair[0].readline(), 5)
    assert line.startswith(b"HTTP/1.1 200"), line


async def test_one_address_holds_at_most_the_cap(port: int, streams: list[Stream]) -> None:
    admitted = [await _open(port, streams) for _ in range(3)]
    refused = await _open(port, streams)
    answer = await _answer(refused, timeout=2)
    assert answer.startswith(b"HTTP/1.1 429"), answer
    assert b"REGSERVE_MAX_CONNECTIONS_PER_CLIENT" in answer
    admitted[0][1].close()
    await admitted[0][1].wait_closed()
    await asyncio.sleep(0.1)
    again = await _open(port, streams)  # a place was freed
    again[1].write(_request(b""))
    assert (await asyncio.wait_for(again[0].readline(), 5)).startswith(b"HTTP/1.1 200")
