"""The one table from error codes to HTTP statuses, and the one renderer of error answers.

Every error answer regserve itself writes goes through :func:`render_error`: FastAPI's
exception handlers (:func:`error_response`), the bare ASGI paths (scoring, authentication,
the registry guard: :func:`send_error`) and the connection protocol's refusals (408, 429),
which write raw HTTP. An answer that arrives with a status only (FastAPI's own refusals,
MLflow's error pages) gets its code from the same table (:func:`code_for_status`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson
from starlette.responses import Response
from starlette.types import Send

from regserve.errors import (
    MethodNotAllowedError,
    RateLimitedError,
    RegServeError,
    UnavailableError,
)

__all__ = [
    "STATUS_BY_CODE",
    "ErrorAnswer",
    "ForeignError",
    "code_for_status",
    "error_response",
    "render_error",
    "send_answer",
    "send_error",
    "status_for",
]

STATUS_BY_CODE = {
    "BAD_REQUEST": 400,
    "INVALID_PARAMETER_VALUE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "REQUEST_TIMEOUT": 408,
    "RESOURCE_ALREADY_EXISTS": 409,
    "REQUEST_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    # The work behind a request failed on this side; what served before goes on serving.
    "ENVIRONMENT_BUILD_FAILED": 503,
    "CLUSTER_UPDATE_FAILED": 503,
    "DEADLINE_EXCEEDED": 504,
}
"""Every ``error_code`` regserve raises, and its status. A code missing here renders as 500."""

_VALIDATION_STATUS = 422
"""A FastAPI app's refusal of a request it could not validate (MLflow's FastAPI routes)."""
_INTERNAL = "INTERNAL_ERROR"


def code_for_status(status: int) -> str:
    """The code of an error answer that came with a status only: the table's first code with
    that status; else INVALID_PARAMETER_VALUE for a 422, BAD_REQUEST for another 4xx and
    INTERNAL_ERROR from 500."""
    for code, known in STATUS_BY_CODE.items():
        if known == status:
            return code
    if status == _VALIDATION_STATUS:
        return "INVALID_PARAMETER_VALUE"
    return _INTERNAL if status >= 500 else "BAD_REQUEST"


class ForeignError(RegServeError):
    """An error answer decided elsewhere (a FastAPI or Starlette refusal): its status and
    headers are kept, in regserve's shape."""

    def __init__(
        self,
        message: str,
        status: int,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code or code_for_status(status)
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class ErrorAnswer:
    """What an error answer is: status, headers (with Content-Length) and the JSON body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _as_is(message: str) -> str:
    return message


def render_error(error: BaseException, shown: Callable[[str], str] = _as_is) -> ErrorAnswer:
    """The answer for ``error``: ``{"error_code", "message"}`` with the code's status and the
    headers it calls for (Retry-After, Allow, WWW-Authenticate). Anything but a
    :class:`RegServeError` is a 500 INTERNAL_ERROR that tells nothing of its cause.
    ``shown`` rewrites the message (the FastAPI paths name server files relative to the data
    dir)."""
    if not isinstance(error, RegServeError):
        error = RegServeError("Internal error: the server could not answer this request.")
    body = orjson.dumps({"error_code": error.error_code, "message": shown(error.message)})
    headers = [(b"content-type", b"application/json"), *_extra_headers(error)]
    headers.append((b"content-length", str(len(body)).encode()))
    return ErrorAnswer(status_for(error), headers, body)


def status_for(error: RegServeError) -> int:
    """The status ``error`` is answered with (a code missing from the table: 500)."""
    if isinstance(error, ForeignError):
        return error.status
    return STATUS_BY_CODE.get(error.error_code, 500)


def _extra_headers(error: RegServeError) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(error, (UnavailableError, RateLimitedError)) and error.retry_after is not None:
        headers.append((b"retry-after", str(error.retry_after).encode()))
    if isinstance(error, MethodNotAllowedError):
        headers.append((b"allow", ", ".join(error.allowed).encode("latin-1")))
    if error.error_code == "UNAUTHENTICATED":  # RFC 9110: a 401 names how to authenticate
        headers.append((b"www-authenticate", b'Bearer realm="regserve"'))
    if isinstance(error, ForeignError):
        ours = {b"content-type", b"content-length", *(name for name, _ in headers)}
        for key, value in error.headers.items():
            name = key.lower().encode("latin-1")
            if name not in ours:
                headers.append((name, value.encode("latin-1")))
    return headers


async def send_error(
    send: Send, error: BaseException, headers: Sequence[tuple[bytes, bytes]] = ()
) -> int:
    """Send the answer for ``error`` (with ``headers`` besides its own) as ASGI messages; its
    status."""
    answer = render_error(error)
    await send_answer(send, answer, headers)
    return answer.status


async def send_answer(
    send: Send, answer: ErrorAnswer, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Send an answer :func:`render_error` made (with ``headers`` besides its own)."""
    start = [*answer.headers, *headers] if headers else answer.headers
    await send({"type": "http.response.start", "status": answer.status, "headers": start})
    await send({"type": "http.response.body", "body": answer.body})


def error_response(error: BaseException, shown: Callable[[str], str] = _as_is) -> Response:
    """The answer for ``error`` as a Starlette response (FastAPI's exception handlers)."""
    answer = render_error(error, shown)
    response = Response(answer.body, answer.status)
    response.raw_headers = list(answer.headers)
    return response
