"""The scoring hot path: ``POST /model/{name}/{ref}/invocations``, as a bare ASGI handler,
and ``POST /model/{name}/invocations``, the split URL, whose version is drawn from the
model's traffic config (a copy may go to its shadow ref once the answer is sent).

The body is never parsed here: it is forwarded with its content type to the worker of the
resolved version, and the worker's answer is sent back as it is.
"""

from __future__ import annotations

import logging
import random
import time

from starlette.types import Receive, Scope, Send

from regserve.auth.levels import PermissionLevel
from regserve.auth.service import AccessService
from regserve.errors import (
    BadRequestError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    RegServeError,
)
from regserve.gateway.bodies import read_body
from regserve.gateway.context import scope_identity
from regserve.gateway.dispatch import Dispatch
from regserve.gateway.errors import send_error
from regserve.gateway.mirror import Mirror, ShadowAnswer
from regserve.metrics import TrafficRecorder
from regserve.router import Router
from regserve.settings import Settings

__all__ = ["SPLIT_REF", "ScoringHandler", "parse_scoring_path"]

_logger = logging.getLogger("regserve.gateway")
_PREFIX = "/model/"
_SUFFIX = "/invocations"


SPLIT_REF = "*"
"""The ``ref`` label of split-URL requests in ``regserve_requests`` (no alias is spelt so)."""

_UNEXPECTED = RegServeError(
    "The request failed on the server's side (not because of its input); the server's log "
    "has the details. Retry, and report it if it persists."
)


def parse_scoring_path(path: str) -> tuple[str, str | None] | None:
    """``(name, ref)`` of a scoring URL (ref None: the split URL ``/model/{name}/invocations``
    of a name without ``/``), or None when the path is not one."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    middle = path[len(_PREFIX) : -len(_SUFFIX)]
    name, sep, ref = middle.rpartition("/")
    if not sep:
        return (ref, None) if ref else None
    if not name or not ref:
        return None
    return name, ref


class ScoringHandler:
    def __init__(
        self, settings: Settings, router: Router, recorder: TrafficRecorder, access: AccessService
    ) -> None:
        self._limit = settings.max_payload_bytes
        self._dispatch = Dispatch(settings, router, recorder)
        self._router = router
        self._recorder = recorder
        self._access = access
        self.mirror = Mirror(settings.request_timeout, [self._count_shadow])
        """Shadow copies; more sinks (an inference table) are added to it."""

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, name: str, ref: str | None
    ) -> None:
        try:
            # From memory after the first request (see AccessService). A refusal is not
            # counted as traffic: made-up model names must not become metric series.
            await self._access.require(
                scope_identity(scope), name, PermissionLevel.CAN_READ, "score it"
            )
        except RegServeError as error:
            await send_error(send, error)
            return
        started = time.perf_counter()
        version, called = "-", "-"
        body, content_type = b"", None
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowedError("Scoring URLs accept POST only.", ("POST",))
            content_type, length = _headers(scope)
            if length is not None and length > self._limit:
                raise self._too_large(length)
            body = await read_body(receive, self._limit, self._too_large)
            called, version, reply = await self._dispatch.send(name, ref, content_type, body)
            status = reply.status
            await _respond(
                send,
                status,
                reply.body,
                [
                    (b"content-type", reply.content_type.encode("latin-1")),
                    (b"x-model-version", version.encode()),
                ],
            )
        except RegServeError as error:
            status = await send_error(send, error)
        except Exception:  # a fault of regserve's: logged whole, answered in the error shape
            _logger.exception("Scoring request to %s/%s failed unexpectedly", name, ref)
            status = await send_error(send, _UNEXPECTED)
        # A model that is not served is counted under "-": names are the caller's choice.
        model = name if version != "-" or self._router.get(name) is not None else "-"
        elapsed = time.perf_counter() - started
        self._recorder.observe(model, version, ref or SPLIT_REF, status, elapsed)
        if ref is None and version != "-":
            self._recorder.observe_split(model, called, version, status)
            self._shadow(name, content_type, body)

    def _shadow(self, name: str, content_type: str | None, body: bytes) -> None:
        routes = self._router.get(name)
        picked = routes.shadow(random.random()) if routes is not None else None
        if picked is not None:
            self.mirror.send(name, picked[0], picked[1], content_type, body)

    def _count_shadow(self, answer: ShadowAnswer) -> None:
        self._recorder.observe_shadow(answer.model, answer.version, answer.outcome)

    def _too_large(self, size: int) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"Request body of {size} bytes or more exceeds the limit of {self._limit} bytes "
            f"({self._limit / 1048576:g} MiB). Split the input into smaller requests."
        )


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
