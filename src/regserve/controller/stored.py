"""What a restart serves before its registry is ready: the versions the store says were READY,
whose files are still on disk, with the stages and aliases of the stored routing table.

The controller records each version's files (``files`` in the version's record, relative to
the models dir) when it deploys or adopts it; Ctrl-C stops the workers but leaves the states
and the files. :meth:`Controller.serve_stored <regserve.controller.reconciler.Controller>`
deploys them again at once, and the registry's first pass corrects whatever changed meanwhile.
"""

from __future__ import annotations

from pathlib import Path

from regserve.registry.models import ModelSnapshot, VersionInfo
from regserve.router import ModelRoutes
from regserve.states import VersionState
from regserve.store import StateStore

__all__ = ["stored_snapshot", "stored_versions"]

_MLMODEL = "MLmodel"


def stored_versions(store: StateStore, models_dir: Path) -> dict[str, dict[str, Path]]:
    """Enabled model -> version -> its files, for the versions stored READY. A model one of
    whose READY versions has no files recorded (served before they were) or on disk any more
    is left out whole: it waits for the registry, as before."""
    found: dict[str, dict[str, Path]] = {}
    for endpoint in store.list_endpoints():
        versions: dict[str, Path] | None = {}
        for record in store.list_versions(endpoint.model_name):
            if record.state != VersionState.READY or versions is None:
                continue
            path = _files(models_dir, record.extra.get("files"))
            if path is None:
                versions = None
            else:
                versions[record.version] = path
        if versions:
            found[endpoint.model_name] = versions
    return found


def _files(models_dir: Path, files: object) -> Path | None:
    """The version's directory when it is under ``models_dir`` and holds its MLmodel."""
    if not isinstance(files, str) or not files:
        return None
    path = models_dir / files
    if not path.resolve().is_relative_to(models_dir.resolve()):
        return None
    return path if (path / _MLMODEL).is_file() else None


def stored_snapshot(
    name: str, versions: dict[str, Path], routes: ModelRoutes | None
) -> ModelSnapshot:
    """A stand-in for the registry's snapshot: ``versions`` READY, in the stages the stored
    routes (``routes``: the table ``SharedRouter.route_stored`` loaded) gave them, with its
    aliases. Nothing else is known (no source, no creation time) until the first pass."""
    aliases = dict(routes.aliases) if routes is not None else {}
    infos = []
    for version in sorted(versions, key=int):
        served = routes.versions.get(version) if routes is not None else None
        named = tuple(sorted(a for a, v in aliases.items() if v == version))
        stage = served.stage if served is not None else "None"
        infos.append(VersionInfo(name, version, stage, "READY", named, "", None, 0))
    return ModelSnapshot(name, tuple(infos), aliases, "")
