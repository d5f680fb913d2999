"""Plain, frozen views of the registry: no MLflow type leaves ``regserve.registry``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelSnapshot", "VersionInfo"]


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version as the registry reports it."""

    name: str
    version: str
    stage: str
    """``"None"``, ``"Staging"``, ``"Production"`` or ``"Archived"``."""
    status: str
    """MLflow's: ``"READY"``, ``"PENDING_REGISTRATION"`` or ``"FAILED_REGISTRATION"``."""
    aliases: tuple[str, ...]
    source: str
    run_id: str | None
    creation_timestamp: int


@dataclass(frozen=True)
class ModelSnapshot:
    """A registered model and all of its versions (archived ones too), read in one pass."""

    name: str
    versions: tuple[VersionInfo, ...]
    """Sorted by ``int(version)``."""
    aliases: dict[str, str]
    """Alias -> version."""
    description: str
    created_at: int = 0
    """The registered model's creation time (ms): a model deleted and created again under
    the same name has another one."""

    def version(self, number: str) -> VersionInfo | None:
        """The version numbered ``number`` (canonical: ``"3"``), or None."""
        return next((v for v in self.versions if v.version == number), None)
