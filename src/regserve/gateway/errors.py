"""The one table from error codes to HTTP statuses, and the one renderer of error bodies."""

from __future__ import annotations

import orjson

from regserve.errors import RateLimitedError, RegServeError, UnavailableError

__all__ = ["STATUS_BY_CODE", "error_body", "error_headers", "status_for"]

STATUS_BY_CODE = {
    "BAD_REQUEST": 400,
    "INVALID_PARAMETER_VALUE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "RESOURCE_ALREADY_EXISTS": 409,
    "REQUEST_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def status_for(error: RegServeError) -> int:
    return STATUS_BY_CODE.get(error.error_code, 500)


def error_body(error_code: str, message: str) -> bytes:
    return orjson.dumps({"error_code": error_code, "message": message})


def error_headers(error: RegServeError) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json")]
    if isinstance(error, (UnavailableError, RateLimitedError)):
        headers.append((b"retry-after", str(error.retry_after).encode()))
    return headers
