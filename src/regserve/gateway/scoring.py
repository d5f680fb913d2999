"""The scoring hot path: ``POST /model/{name}/{ref}/invocations``, as a bare ASGI handler,
and ``POST /model/{name}/invocations``, the split URL, whose version is drawn from the
model's traffic config (a copy may go to its shadow ref once the answer is sent).

Every answer carries ``X-Request-Id`` (the caller's, when sane, else a new one); a request to
a model whose inference table is on is captured at its sampling rate once answered (a row
queued for the writer, :mod:`regserve.inference`), and so is its shadow copy's answer.

The body is never parsed here: it is forwarded with its content type to the worker of the
resolved version, and the worker's answer is sent back as it is.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

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
from regserve.gateway.errors import render_error, send_answer, send_error
from regserve.gateway.mirror import Mirror, ShadowAnswer
from regserve.inference.capture import InferenceCapture, request_id_of
from regserve.inference.rows import CapturedRow
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
        self,
        settings: Settings,
        router: Router,
        recorder: TrafficRecorder,
        access: AccessService,
        capture: InferenceCapture | None = None,
    ) -> None:
        self._limit = settings.max_payload_bytes
        self._dispatch = Dispatch(settings, router, recorder)
        self._router = router
        self._recorder = recorder
        self._access = access
        self._capture = capture or InferenceCapture(None, 0)
        self.mirror = Mirror(settings.request_timeout, [self._count_shadow, self._capture_shadow])
        """Shadow copies, counted, and captured with the request they copy."""

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, name: str, ref: str | None
    ) -> None:
        content_type, length, id_header = _headers(scope)
        request_id = request_id_of(id_header)
        extra = [(b"x-request-id", request_id.encode())]
        try:
            caller = scope_identity(scope)
            # From memory after the first request (see AccessService). A refusal is not
            # counted as traffic: made-up model names must not become metric series.
            await self._access.require(caller, name, PermissionLevel.CAN_READ, "score it")
        except RegServeError as error:
            await send_error(send, error, extra)
            return
        arrived, started = time.time(), time.perf_counter()
        version, called = "-", "-"
        body, answer = b"", b""
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowedError("Scoring URLs accept POST only.", ("POST",))
            size = _length(length)
            if size is not None and size > self._limit:
                raise self._too_large(size)
            body = await read_body(receive, self._limit, self._too_large)
            called, version, reply = await self._dispatch.send(name, ref, content_type, body)
            status, answer = reply.status, reply.body
            kind = (b"content-type", reply.content_type.encode("latin-1"))
            version_header = (b"x-model-version", version.encode())
            await _respond(send, status, answer, [kind, version_header, *extra])
        except RegServeError as error:
            status, answer = await _send_failure(send, error, extra)
        except Exception:  # a fault of regserve's: logged whole, answered in the error shape
            _logger.exception("Scoring request to %s/%s failed unexpectedly", name, ref)
            status, answer = await _send_failure(send, _UNEXPECTED, extra)
        # A model that is not served is counted under "-": names are the caller's choice.
        model = name if version != "-" or self._router.get(name) is not None else "-"
        elapsed = time.perf_counter() - started
        self._recorder.observe(model, version, ref or SPLIT_REF, status, elapsed)
        captured = model != "-" and self._capture.sampled(model)
        if captured:
            row = _Exchange(request_id, arrived, caller.name, content_type, body, answer)
            self._record(row, model, version, ref, called, status, elapsed)
        if ref is None and version != "-":
            self._recorder.observe_split(model, called, version, status)
            self._shadow(name, content_type, body, request_id if captured else None, caller.name)

    def _shadow(
        self,
        name: str,
        content_type: str | None,
        body: bytes,
        request_id: str | None,
        caller: str,
    ) -> None:
        routes = self._router.get(name)
        picked = routes.shadow(random.random()) if routes is not None else None
        if picked is not None:
            self.mirror.send(name, picked[0], picked[1], content_type, body, request_id, caller)

    def _record(
        self,
        exchange: _Exchange,
        model: str,
        version: str,
        ref: str | None,
        called: str,
        status: int,
        seconds: float,
    ) -> None:
        request, request_cut = self._capture.cut(exchange.request)
        response, response_cut = self._capture.cut(exchange.response)
        self._capture.record(
            CapturedRow(
                request_id=exchange.request_id,
                time_ms=int(exchange.arrived * 1000),
                model=model,
                version=version,
                ref=ref or SPLIT_REF,
                route=called if ref is None and version != "-" else None,
                shadow=False,
                caller=exchange.caller,
                status_code=status,
                latency_ms=seconds * 1000,
                content_type=exchange.content_type,
                request=request,
                request_truncated=request_cut,
                response=response,
                response_truncated=response_cut,
            )
        )

    def _count_shadow(self, answer: ShadowAnswer) -> None:
        self._recorder.observe_shadow(answer.model, answer.version, answer.outcome)

    def _capture_shadow(self, answer: ShadowAnswer) -> None:
        """A copy of a captured request: its answer goes into the table, marked as a shadow's
        (under the caller's request id)."""
        if answer.request_id is None:
            return
        request, request_cut = self._capture.cut(answer.request)
        body = answer.reply.body if answer.reply is not None else None
        response, response_cut = self._capture.cut(body) if body is not None else (None, False)
        self._capture.record(
            CapturedRow(
                request_id=answer.request_id,
                time_ms=int((time.time() - answer.seconds) * 1000),
                model=answer.model,
                version=answer.version,
                ref=answer.ref,
                route=None,
                shadow=True,
                caller=answer.caller,
                status_code=answer.reply.status if answer.reply is not None else None,
                latency_ms=answer.seconds * 1000,
                content_type=answer.content_type,
                request=request,
                request_truncated=request_cut,
                response=response,
                response_truncated=response_cut,
            )
        )

    def _too_large(self, size: int) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"Request body of {size} bytes or more exceeds the limit of {self._limit} bytes "
            f"({self._limit / 1048576:g} MiB). Split the input into smaller requests."
        )


@dataclass(frozen=True, slots=True)
class _Exchange:
    """What the caller sent and was answered, for the inference table."""

    request_id: str
    arrived: float
    caller: str
    content_type: str | None
    request: bytes
    response: bytes


async def _send_failure(
    send: Send, error: RegServeError, headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes]:
    answer = render_error(error)
    await send_answer(send, answer, headers)
    return answer.status, answer.body


def _headers(scope: Scope) -> tuple[str | None, bytes | None, bytes | None]:
    """Content-Type, Content-Length and X-Request-Id as the caller sent them."""
    content_type: str | None = None
    length: bytes | None = None
    request_id: bytes | None = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value.decode("latin-1")
        elif key == b"content-length":
            length = value
        elif key == b"x-request-id":
            request_id = value
    return content_type, length, request_id


def _length(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequestError("Content-Length is not a number.") from None


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
