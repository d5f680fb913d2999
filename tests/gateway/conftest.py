"""In-process fixtures for the gateway: its FastAPI app without services or a registry, and a
recorder of the ASGI messages a bare handler sends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import Message

from regserve.gateway.asgi import build_api


class Sent:
    """An ASGI ``send`` that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        status: int = self.messages[0]["status"]
        return status

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    """The FastAPI app as built to list its routes (no services, no registry mounted), called
    in process. Server errors are answered, not raised into the test."""
    transport = httpx.ASGITransport(build_api(None, None), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


def error_of(answer: Any) -> dict[str, Any]:
    body: dict[str, Any] = answer.json()
    assert set(body) == {"error_code", "message"}, body
    return body
