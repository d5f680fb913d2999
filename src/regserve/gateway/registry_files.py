"""Who may read and change which files of the hosted registry, and register versions from them.

Deny by default. A file can be reached only as part of a run or a logged model: a path is
first placed inside the artifact root MLflow recorded for one (the outermost, when a run's
root lies inside another's files), and a path inside none is for admins only. Then:

- **reading** needs one of: being the run's or logged model's owner (who created it through
  the hosted registry), or CAN_READ on a registered model with a version whose source holds
  the path;
- **changing** (upload, overwrite, delete, and every change to a logged model) needs being
  its owner, and CAN_MANAGE on every registered model with a version whose source overlaps
  the path (those files are what a Production URL serves);
- **registering a version** needs reading its source: CAN_READ on the registered model of a
  ``models:/<name>/...`` source, or reading the files of any other form MLflow accepts
  (``models:/m-<id>``, ``runs:/``, ``mlflow-artifacts:``), and reading the run and logged
  model the request names. Other sources (local paths, ``file:``, ``http(s):``, cloud stores)
  are for admins: regserve itself would fetch them.

Admins may do everything. Artifact roots are looked up in MLflow's own records (cached: they
never change), owners in regserve's store (``AccessService.owner``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from regserve.auth.artifact_rules import (
    LOGGED_MODEL,
    RUN,
    ArtifactLocation,
    ArtifactPath,
    ArtifactRequest,
    ModelReference,
    OwnedPath,
    StorePath,
    owner_candidates,
    source_reference,
    store_path,
)
from regserve.auth.cache import TTLCache
from regserve.auth.levels import PermissionLevel
from regserve.auth.service import AccessService, Identity
from regserve.errors import InvalidParameterError, PermissionDeniedError

if TYPE_CHECKING:
    from regserve.gateway.registry_guard import RegistryLookups

__all__ = ["RegistryFiles"]

_ROOTS_TTL = 3600.0  # a run's or logged model's artifact root never changes
_ROOTS_SIZE = 4096
_OUTSIDE: tuple[str, ...] = ("",)
"""A cached root outside the artifact store (no store path has an empty segment)."""
_Relation = Callable[[ArtifactLocation, ArtifactLocation], bool]
_SOURCES = (
    "Versions are registered from 'models:/<name>/<version>', 'models:/m-<id>', "
    "'runs:/<run id>/<path>' or 'mlflow-artifacts:/...' sources you may read"
)


class RegistryFiles:
    """Decides on artifact requests, logged model changes and version sources."""

    def __init__(self, access: AccessService, lookups: RegistryLookups) -> None:
        self._access = access
        self._lookups = lookups
        self._roots: TTLCache[tuple[str, str], tuple[str, ...]] = TTLCache(_ROOTS_TTL, _ROOTS_SIZE)

    # -- requests ----------------------------------------------------------------------------

    async def authorize(self, identity: Identity, request: ArtifactRequest) -> None:
        """PermissionDeniedError unless ``identity`` may make this artifact request."""
        if identity.is_admin:
            return
        location = await self.locate(request.path) if request.path is not None else None
        if location is None:
            verb = "change" if request.write else "read"
            raise PermissionDeniedError(
                f"'{request.asked}' is not inside the files of a run or logged model, and only "
                f"admins may {verb} anything else in the artifact store. Files are at "
                "<experiment>/<run id>/artifacts/... and <experiment>/models/<model id>/"
                "artifacts/..."
            )
        if request.write:
            await self.require_write(identity, location)
        else:
            await self.require_read(identity, location, "read them")

    async def require_read(self, identity: Identity, location: ArtifactLocation, to: str) -> None:
        if identity.is_admin or await self._owns(identity, location):
            return
        readers = await self._models_with(location, ArtifactLocation.contains)
        if readers and await self._access.readable(identity, readers):
            return
        because = (
            f"CAN_READ on registered model '{readers[0]}', made from them, is needed to {to}"
            if readers
            else f"another principal created them; only it (and admins) may {to}"
        )
        raise PermissionDeniedError(
            f"'{identity.name}' may not read {_files_of(location)}: {because}."
        )

    async def require_write(
        self, identity: Identity, location: ArtifactLocation, served: bool = True
    ) -> None:
        """Its owner may change it; ``served`` (the files, not an annotation): only with
        CAN_MANAGE on every registered model with a version made from them."""
        if identity.is_admin:
            return
        if not await self._owns(identity, location):
            raise PermissionDeniedError(
                f"'{identity.name}' may not change {_files_of(location)}: only the principal "
                "who created it (and admins) may."
            )
        if not served:
            return
        for model in await self._models_with(location, ArtifactLocation.overlaps):
            await self._access.require(
                identity,
                model,
                PermissionLevel.CAN_MANAGE,
                "change the files a version of it was registered from",
            )

    async def require_logged_model_change(
        self, identity: Identity, model_id: str, served: bool
    ) -> None:
        """Changing a logged model: deleting it or its status (``served``) is changing what
        its versions serve; its tags and params annotate it."""
        await self.require_write(identity, ArtifactLocation(LOGGED_MODEL, model_id, ""), served)

    async def authorize_source(self, identity: Identity, params: dict[str, Any]) -> None:
        """PermissionDeniedError unless ``identity`` may read what a new version is made of."""
        source = params.get("source")
        if identity.is_admin or not isinstance(source, str) or not source:
            return  # MLflow refuses a missing source itself
        reference = source_reference(source)
        if isinstance(reference, ModelReference):
            # MLflow insists that run_id and model_id match that version's own.
            await self._access.require(
                identity,
                reference.name,
                PermissionLevel.CAN_READ,
                f"register a version from its files ('{source}')",
            )
            return
        location = await self.locate(reference) if reference is not None else None
        if location is None:
            raise PermissionDeniedError(f"{_SOURCES}; '{source}' is not one (admins may).")
        to = f"register a version from them ('{source}')"
        await self.require_read(identity, location, to)
        for key, owner in (("run_id", RUN), ("model_id", LOGGED_MODEL)):
            named = params.get(key)
            if isinstance(named, str) and named and (owner, named) != location.owner_key:
                await self.require_read(identity, ArtifactLocation(owner, named, ""), to)

    # -- where files are ---------------------------------------------------------------------

    async def locate(self, path: ArtifactPath) -> ArtifactLocation | None:
        """The run or logged model whose files hold ``path`` (the outermost), or None."""
        if isinstance(path, OwnedPath):
            root = await self._root(path.owner, path.owner_id)
            if root is None:
                return None
            if root == _OUTSIDE:  # not in the store: the owner's root is the only one
                return ArtifactLocation(path.owner, path.owner_id, "/".join(path.parts))
            path = StorePath(root + path.parts)
        for owner, owner_id, end in owner_candidates(path.parts):
            if await self._root(owner, owner_id) == path.parts[:end]:
                return ArtifactLocation(owner, owner_id, "/".join(path.parts[end:]))
        return None

    async def _root(self, owner: str, owner_id: str) -> tuple[str, ...] | None:
        """The store path of an artifact root, :data:`_OUTSIDE`, or None (no such thing)."""
        cached = self._roots.get((owner, owner_id))
        if cached is not None:
            return cached
        uri = await self._lookups.artifact_root(owner, owner_id)
        if uri is None:
            return None  # not cached: it may be created yet
        try:
            found = store_path(uri)
        except InvalidParameterError:
            found = None
        root = found.parts if found is not None and found.parts else _OUTSIDE
        self._roots.put((owner, owner_id), root)
        return root

    async def _owns(self, identity: Identity, location: ArtifactLocation) -> bool:
        owner = await self._access.owner(location.owner, location.owner_id)
        return owner is not None and owner == identity.principal.id

    async def _models_with(self, location: ArtifactLocation, relation: _Relation) -> list[str]:
        """Registered models with a version whose source is ``relation``-ed to ``location``
        (``ArtifactLocation.contains``: holds it; ``overlaps``: holds it or lies in it)."""
        found = set()
        for name, source in await self._lookups.sources_naming(location.owner_id):
            reference = source_reference(source)
            if isinstance(reference, ModelReference) or reference is None:
                continue
            source_location = await self.locate(reference)
            if source_location is not None and relation(source_location, location):
                found.add(name)
        return sorted(found)


def _files_of(location: ArtifactLocation) -> str:
    return f"the files of {location.describe()}" if location.path else location.describe()
