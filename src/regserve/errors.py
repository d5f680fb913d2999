"""Typed errors of the core. Each carries an MLflow/Databricks error_code and no HTTP status.

The gateway maps codes to statuses in one table (``regserve.gateway.errors``).
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "BadRequestError",
    "InvalidParameterError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RegServeError",
    "TimeoutError_",
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


class UnauthenticatedError(RegServeError):
    error_code = "UNAUTHENTICATED"


class PermissionDeniedError(RegServeError):
    error_code = "PERMISSION_DENIED"


class AlreadyExistsError(RegServeError):
    error_code = "RESOURCE_ALREADY_EXISTS"


class RateLimitedError(RegServeError):
    """The caller sent more requests than its limit allows; retry after ``retry_after`` s."""

    error_code = "REQUEST_LIMIT_EXCEEDED"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLargeError(RegServeError):
    error_code = "REQUEST_TOO_LARGE"


class UnsupportedMediaTypeError(RegServeError):
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class UnavailableError(RegServeError):
    """The target exists but cannot answer yet (starting, restarting); retry later."""

    error_code = "TEMPORARILY_UNAVAILABLE"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TimeoutError_(RegServeError):
    error_code = "DEADLINE_EXCEEDED"
