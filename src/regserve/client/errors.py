"""Typed errors of the Python client: one class per kind of answer a caller may act on.

A regserve error answer ``{"error_code", "message"}`` becomes the class its ``error_code`` names
(``error_for``); an answer without a known code falls back to its HTTP status.
"""

from __future__ import annotations

from regserve import errors as core

__all__ = [
    "BadRequestError",
    "ClientError",
    "ConnectionFailedError",
    "DeadlineExceededError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestTooLargeError",
    "ServerError",
    "ServingFailedError",
    "UnauthenticatedError",
    "UnavailableError",
    "WaitTimeoutError",
    "error_for",
]


class ClientError(Exception):
    """Root of every error the client raises; ``status`` is 0 when there was no answer."""

    def __init__(
        self, message: str, error_code: str = "", status: int = 0, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{error_code}: {message}" if error_code else message)
        self.message = message
        self.error_code = error_code
        self.status = status
        self.retry_after = retry_after


class BadRequestError(ClientError):
    """The request was refused as malformed or with a wrong parameter (400, 415)."""


class UnauthenticatedError(ClientError):
    """No token, or a wrong, expired or revoked one (401)."""


class PermissionDeniedError(ClientError):
    """The token's principal may not do this (403)."""


class NotFoundError(ClientError):
    """No such model, version, stage, alias or route (404)."""


class RequestTooLargeError(ClientError):
    """The body was over the server's payload limit (413)."""


class RateLimitedError(ClientError):
    """Over the token's rate limit (429); ``retry_after`` says when to try again."""


class UnavailableError(ClientError):
    """The version is starting, restarting or failed (503); ``retry_after`` is the hint."""


class DeadlineExceededError(ClientError):
    """The request took longer than the server's timeout (504)."""


class ServerError(ClientError):
    """Any other error answer (5xx, or a code this client does not know)."""


class ConnectionFailedError(ClientError):
    """regserve could not be reached, or did not answer in time."""


class ServingFailedError(ClientError):
    """Waiting for serving ended in a FAILED endpoint or version."""


class WaitTimeoutError(ClientError):
    """Waiting for serving did not reach a final state in time."""


_BY_CODE: dict[str, type[ClientError]] = {
    core.BadRequestError.error_code: BadRequestError,
    core.InvalidParameterError.error_code: BadRequestError,
    "MALFORMED_REQUEST": BadRequestError,  # MLflow's scoring server's
    core.UnsupportedMediaTypeError.error_code: BadRequestError,
    core.UnauthenticatedError.error_code: UnauthenticatedError,
    core.PermissionDeniedError.error_code: PermissionDeniedError,
    core.NotFoundError.error_code: NotFoundError,
    core.EndpointNotFoundError.error_code: NotFoundError,
    core.PayloadTooLargeError.error_code: RequestTooLargeError,
    core.RateLimitedError.error_code: RateLimitedError,
    core.UnavailableError.error_code: UnavailableError,
    core.DeadlineExceededError.error_code: DeadlineExceededError,
}
"""The server's codes, from the core's errors (a client class of the same name as a core
error stands for the same code)."""
_BY_STATUS: dict[int, type[ClientError]] = {
    400: BadRequestError,
    401: UnauthenticatedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    415: BadRequestError,
    429: RateLimitedError,
    503: UnavailableError,
    504: DeadlineExceededError,
}


def error_for(
    status: int, error_code: str, message: str, retry_after: float | None = None
) -> ClientError:
    """The typed error for an error answer: by its ``error_code``, else by its status."""
    cls = _BY_CODE.get(error_code) or _BY_STATUS.get(status, ServerError)
    return cls(message, error_code or f"HTTP_{status}", status, retry_after)
