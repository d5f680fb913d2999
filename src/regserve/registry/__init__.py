"""Reading the MLflow registry (models, versions, stages, aliases, artifacts) and hosting it.

``hosted`` and ``demo`` are imported on their own: ``hosted`` configures MLflow's server
through the environment and must be imported deliberately. The reader imports MLflow (seconds
on a cold start), so it is imported on first use: ``regserve up`` listens before that
(``deferred.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regserve.registry.errors import RegistryStartingError, RegistryUnavailableError
from regserve.registry.models import ModelSnapshot, VersionInfo

if TYPE_CHECKING:
    from regserve.registry.reader import ArtifactResolver, RegistryReader, local_artifacts_resolver

__all__ = [
    "ArtifactResolver",
    "ModelSnapshot",
    "RegistryReader",
    "RegistryStartingError",
    "RegistryUnavailableError",
    "VersionInfo",
    "local_artifacts_resolver",
]

_FROM_READER = frozenset({"ArtifactResolver", "RegistryReader", "local_artifacts_resolver"})


def __getattr__(name: str) -> Any:
    if name in _FROM_READER:
        from regserve.registry import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
