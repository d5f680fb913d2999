"""The listening socket a restart hands on, and the drain's ``Connection: close``."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from regserve.restart.drain import DrainGate
from regserve.restart.listener import listening_socket
from regserve.settings import Settings


def test_a_bound_socket_listens_and_an_inherited_one_is_taken_as_it_is() -> None:
    bound = listening_socket(Settings(host="127.0.0.1", port=0))
    try:
        address = bound.getsockname()
        inherited = listening_socket(Settings(listen_fd=bound.dup().detach()))
        try:
            assert inherited.getsockname() == address
            assert not inherited.get_inheritable()  # only a re-exec hands it on
            with socket.create_connection(address, timeout=5):
                conn, _ = inherited.accept()  # a connection made on one is accepted by the other
                conn.close()
        finally:
            inherited.close()
    finally:
        bound.close()


def _respond(gate: DrainGate) -> list[tuple[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request"}

    gate.app = app
    asyncio.run(gate(scope={"type": "http"}, receive=receive, send=send))
    return list(sent[0]["headers"])


def test_while_draining_every_response_closes_its_connection() -> None:
    gate = DrainGate(lambda scope, receive, send: asyncio.sleep(0))
    assert _respond(gate) == [(b"a", b"b")]
    gate.draining = True
    assert _respond(gate) == [(b"a", b"b"), (b"connection", b"close")]
