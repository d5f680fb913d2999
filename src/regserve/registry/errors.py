"""Errors of the registry package."""

from __future__ import annotations

from regserve.errors import UnavailableError

__all__ = ["RegistryStartingError", "RegistryUnavailableError"]


class RegistryUnavailableError(UnavailableError):
    """The registry (MLflow server or database) cannot be reached or failed to answer."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)


class RegistryStartingError(UnavailableError):
    """regserve listens already, but its registry (the hosted MLflow server and its database,
    or the reader on ``--registry-uri``) is still being made ready."""

    def __init__(self, retry_after: int = 2) -> None:
        super().__init__(
            "The MLflow registry is starting (regserve has just started); "
            f"retry in {retry_after} s.",
            retry_after=retry_after,
        )
