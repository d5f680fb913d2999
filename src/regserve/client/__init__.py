"""The Python client of regserve: control API wrappers, batch scoring, MLflow deployments plugin.

>>> from regserve.client import Client
>>> with Client("http://127.0.0.1:8080", token) as c:  # doctest: +SKIP
...     predictions = c.score(frame, "iris-classifier", "Production")
"""

from __future__ import annotations

from regserve.client.api import Client
from regserve.client.errors import (
    BadRequestError,
    ClientError,
    ConnectionFailedError,
    DeadlineExceededError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTooLargeError,
    ServerError,
    ServingFailedError,
    UnauthenticatedError,
    UnavailableError,
    WaitTimeoutError,
)
from regserve.client.transport import RetryPolicy

__all__ = [
    "BadRequestError",
    "Client",
    "ClientError",
    "ConnectionFailedError",
    "DeadlineExceededError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestTooLargeError",
    "RetryPolicy",
    "ServerError",
    "ServingFailedError",
    "UnauthenticatedError",
    "UnavailableError",
    "WaitTimeoutError",
]
