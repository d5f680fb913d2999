"""Reading an ASGI request body under a size limit, refusing as soon as it is passed."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Receive

from regserve.errors import BadRequestError, RegServeError

__all__ = ["read_body"]


async def read_body(
    receive: Receive, limit: int, too_large: Callable[[int], RegServeError]
) -> bytes:
    """The whole body; ``too_large(size)`` is raised once more than ``limit`` bytes arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequestError("The client closed the connection before sending the body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
