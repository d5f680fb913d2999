"""The scoring hot path: ``POST /model/{name}/{ref}/invocations``, as a bare ASGI handler.

The body is never parsed here: it is forwarded with its content type to the worker of the
resolved version, and the worker's answer is sent back as it is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.types import Receive, Scope, Send

from regserve.auth.levels import PermissionLevel
from regserve.auth.service import AccessService
from regserve.errors import BadRequestError, PayloadTooLargeError, RegServeError, UnavailableError
from regserve.gateway.bodies import read_body
from regserve.gateway.context import scope_identity
from regserve.gateway.errors import error_body, error_headers, status_for
from regserve.metrics import TrafficRecorder
from regserve.router import Router
from regserve.settings import Settings

__all__ = ["ScoringHandler", "parse_scoring_path"]

_PREFIX = "/model/"
_SUFFIX = "/invocations"


def parse_scoring_path(path: str) -> tuple[str, str] | None:
    """``(name, ref)`` of a scoring URL, or None when the path is not one."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    middle = path[len(_PREFIX) : -len(_SUFFIX)]
    name, sep, ref = middle.rpartition("/")
    if not sep or not name or not ref:
        return None
    return name, ref


class ScoringHandler:
    def __init__(
        self, settings: Settings, router: Router, recorder: TrafficRecorder, access: AccessService
    ) -> None:
        self._limit = settings.max_payload_bytes
        self._timeout = settings.request_timeout
        self._wait = settings.unavailable_wait
        self._router = router
        self._recorder = recorder
        self._access = access

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, name: str, ref: str
    ) -> None:
        try:
            # From memory after the first request (see AccessService). A refusal is not
            # counted as traffic: made-up model names must not become metric series.
            await self._access.require(
                scope_identity(scope), name, PermissionLevel.CAN_READ, "score it"
            )
        except RegServeError as error:
            body = error_body(error.error_code, error.message)
            await _respond(send, status_for(error), body, error_headers(error))
            return
        started = time.perf_counter()
        version = "-"
        try:
            if scope["method"] != "POST":
                raise _MethodNotAllowed("Scoring URLs accept POST only.")
            content_type, length = _headers(scope)
            if length is not None and length > self._limit:
                raise self._too_large(length)
            body = await read_body(receive, self._limit, self._too_large)
            # Resolved after the body is read: from here to the target taking the request
            # nothing awaits, so a version whose routes were withdrawn (archived, replaced by
            # a cluster update) has counted every request that will reach it before it drains.
            deadline = 0.0
            while True:
                try:
                    served = self._router.resolve(name, ref)
                    version = served.version
                    assert served.target is not None
                    reply: Any = await served.target.request(content_type, body, self._timeout)
                    break
                except UnavailableError as error:
                    deadline = deadline or time.monotonic() + self._wait
                    # A FAILED version (Retry-After 30) is not waited for; nothing was sent to
                    # the caller yet, so the request may be resolved and sent again.
                    if error.retry_after > _WAITABLE or time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(_WAIT_STEP)
            status = reply.status
            await _respond(send, status, reply.body, [
                (b"content-type", reply.content_type.encode("latin-1")),
                (b"x-model-version", version.encode()),
            ])  # fmt: skip
        except RegServeError as error:
            status = status_for(error)
            await _respond(
                send, status, error_body(error.error_code, error.message), error_headers(error)
            )
        self._recorder.observe(name, version, ref, status, time.perf_counter() - started)

    def _too_large(self, size: int) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"Request body of {size} bytes or more exceeds the limit of {self._limit} bytes "
            f"({self._limit / 1048576:g} MiB). Split the input into smaller requests."
        )


_WAITABLE = 2
"""Retry-After of the refusals worth waiting out (not ready yet, no replica up)."""
_WAIT_STEP = 0.05


class _MethodNotAllowed(RegServeError):
    error_code = "METHOD_NOT_ALLOWED"


def _headers(scope: Scope) -> tuple[str | None, int | None]:
    content_type: str | None = None
    length: int | None = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value.decode("latin-1")
        elif key == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise BadRequestError("Content-Length is not a number.") from None
    return content_type, length


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
