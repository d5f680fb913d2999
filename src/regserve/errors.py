"""Typed errors of the core. Each carries an MLflow/Databricks error_code and no HTTP status.

The gateway maps codes to statuses in one table (``regserve.gateway.errors``).
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "BadRequestError",
    "DeadlineExceededError",
    "EndpointNotFoundError",
    "InvalidParameterError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RegServeError",
    "RequestTimeoutError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
]


class RegServeError(Exception):
    """Root of every error regserve reports to a caller."""

    error_code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(RegServeError):
    error_code = "BAD_REQUEST"


class InvalidParameterError(RegServeError):
    error_code = "INVALID_PARAMETER_VALUE"


class NotFoundError(RegServeError):
    error_code = "RESOURCE_DOES_NOT_EXIST"


class EndpointNotFoundError(RegServeError):
    """No such route: a path of the serving API (or a feature) this regserve does not have."""

    error_code = "ENDPOINT_NOT_FOUND"


class UnauthenticatedError(RegServeError):
    error_code = "UNAUTHENTICATED"


class PermissionDeniedError(RegServeError):
    error_code = "PERMISSION_DENIED"


class MethodNotAllowedError(RegServeError):
    """The path exists, but not for this method; ``allowed`` lists the methods it takes."""

    error_code = "METHOD_NOT_ALLOWED"

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class AlreadyExistsError(RegServeError):
    error_code = "RESOURCE_ALREADY_EXISTS"


class RateLimitedError(RegServeError):
    """The caller sent more requests than its limit allows; retry after ``retry_after`` s
    (None: no hint, as for a client over its number of connections)."""

    error_code = "REQUEST_LIMIT_EXCEEDED"

    def __init__(self, message: str, retry_after: int | None = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLargeError(RegServeError):
    error_code = "REQUEST_TOO_LARGE"


class UnsupportedMediaTypeError(RegServeError):
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class UnavailableError(RegServeError):
    """The target exists but cannot answer yet (starting, restarting); retry later."""

    error_code = "TEMPORARILY_UNAVAILABLE"

    def __init__(self, message: str, retry_after: int = 1, sent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.sent = sent
        """The request reached a worker that died before answering: it may be sent again, a
        bounded number of times (it may be what killed it)."""


class RequestTimeoutError(RegServeError):
    """The client was too slow sending its request (headers or body)."""

    error_code = "REQUEST_TIMEOUT"


class DeadlineExceededError(RegServeError):
    """The request was not answered within its deadline (the client's class of the same name
    stands for this code)."""

    error_code = "DEADLINE_EXCEEDED"
