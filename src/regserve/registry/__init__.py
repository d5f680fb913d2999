"""Reading the MLflow registry (models, versions, stages, aliases, artifacts) and hosting it.

``hosted`` and ``demo`` are imported on their own: ``hosted`` configures MLflow's server
through the environment and must be imported deliberately.
"""

from __future__ import annotations

from regserve.registry.errors import RegistryUnavailableError
from regserve.registry.models import ModelSnapshot, VersionInfo
from regserve.registry.reader import ArtifactResolver, RegistryReader, local_artifacts_resolver

__all__ = [
    "ArtifactResolver",
    "ModelSnapshot",
    "RegistryReader",
    "RegistryUnavailableError",
    "VersionInfo",
    "local_artifacts_resolver",
]
