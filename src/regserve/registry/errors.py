"""Errors of the registry package."""

from __future__ import annotations

from regserve.errors import UnavailableError

__all__ = ["RegistryUnavailableError"]


class RegistryUnavailableError(UnavailableError):
    """The registry (MLflow server or database) cannot be reached or failed to answer."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)
