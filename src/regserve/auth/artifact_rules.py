"""Which files an artifact request or a model version's source names, spelled one way.

The hosted registry keeps every file in its artifact store (``mlflow-artifacts:/``, the
``<data-dir>/artifacts`` folder): a run's under ``<experiment location>/<run id>/artifacts/``,
an MLflow 3 logged model's under ``<experiment location>/models/<model id>/artifacts/``. The
guard allows a request only inside the files of a run or logged model, so this module turns
each request into an :class:`ArtifactRequest`:

- a :class:`StorePath` (``mlflow-artifacts/artifacts/<path>``, its listing's ``?path=``,
  multipart uploads, presigned URLs), relative to the store's root; or
- an :class:`OwnedPath` (``/get-artifact``, ``artifacts/list``, a logged model's
  ``artifacts/files|directories``), relative to that run's or logged model's own root.

``regserve.gateway.registry_files`` then finds the run or logged model whose real artifact
root (as MLflow recorded it) holds the path, and decides. This module is pure.

Spelling: ASGI hands over the path decoded once; MLflow decodes artifact paths again, as
many times as they change (``mlflow.utils.uri.validate_path_is_safe``), and some handlers then
use the decoded path and some the original. A path that further decoding would change is
therefore refused (400), like one with ``..``, a backslash or a control character: the guard
and MLflow always read the same path. ``.`` and empty segments (``a//b``) are dropped, as the
file system does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from regserve.errors import InvalidParameterError

__all__ = [
    "LOGGED_MODEL",
    "RUN",
    "ArtifactLocation",
    "ArtifactPath",
    "ArtifactRequest",
    "ModelReference",
    "OwnedPath",
    "StorePath",
    "artifact_request",
    "clean_parts",
    "is_artifact_route",
    "owner_candidates",
    "source_reference",
    "store_path",
]

RUN = "run"
LOGGED_MODEL = "logged_model"
STORE_SCHEME = "mlflow-artifacts"

_RUN_ID = re.compile(r"[0-9a-f]{32}")
_MODEL_ID = re.compile(r"m-[0-9a-f]{32}")
_STORE_PREFIXES = (
    "/api/2.0/mlflow-artifacts/artifacts",
    "/ajax-api/2.0/mlflow-artifacts/artifacts",
)
_MPU_PREFIXES = ("/api/2.0/mlflow-artifacts/mpu/", "/ajax-api/2.0/mlflow-artifacts/mpu/")
_PRESIGNED_PREFIXES = (
    "/api/2.0/mlflow-artifacts/presigned/",
    "/ajax-api/2.0/mlflow-artifacts/presigned/",
)
_LOGGED_MODEL_FILES = re.compile(
    r"^/(?:ajax-)?api/2\.0/mlflow/logged-models/(?P<id>[^/]+)/artifacts/(?:files|directories)$"
)
_RUN_LISTINGS = frozenset(
    {
        "/get-artifact",
        "/api/2.0/mlflow/artifacts/list",
        "/ajax-api/2.0/mlflow/artifacts/list",
    }
)


@dataclass(frozen=True)
class StorePath:
    """A path in the hosted artifact store, relative to its root."""

    parts: tuple[str, ...]


@dataclass(frozen=True)
class OwnedPath:
    """A path relative to the artifact root of one run or logged model."""

    owner: str
    """:data:`RUN` or :data:`LOGGED_MODEL`."""
    owner_id: str
    parts: tuple[str, ...]


ArtifactPath = StorePath | OwnedPath


@dataclass(frozen=True)
class ArtifactRequest:
    """What an artifact request touches, and whether it changes it."""

    path: ArtifactPath | None
    """None: no file of a run or logged model (the store's root, a listing without a run)."""
    write: bool
    asked: str
    """The path as the request spelled it, for messages."""


@dataclass(frozen=True)
class ArtifactLocation:
    """Files of one run or logged model: ``path`` relative to its artifact root."""

    owner: str
    owner_id: str
    path: str
    """``""`` is the whole artifact root."""

    def contains(self, other: ArtifactLocation) -> bool:
        """Whether ``other`` is this location or lies beneath it."""
        if (self.owner, self.owner_id) != (other.owner, other.owner_id):
            return False
        return not self.path or other.path == self.path or other.path.startswith(self.path + "/")

    @property
    def owner_key(self) -> tuple[str, str]:
        return self.owner, self.owner_id

    def overlaps(self, other: ArtifactLocation) -> bool:
        """Whether changing one changes files of the other (one contains the other)."""
        return self.contains(other) or other.contains(self)

    def describe(self) -> str:
        kind = "run" if self.owner == RUN else "logged model"
        return f"{kind} {self.owner_id}" + (f" (path '{self.path}')" if self.path else "")


@dataclass(frozen=True)
class ModelReference:
    """A ``models:/<name>/<version|stage|latest>`` or ``models:/<name>@<alias>`` source: the
    files of a version of registered model ``name``."""

    name: str


def is_artifact_route(method: str, path: str) -> bool:
    """Whether ``method path`` (of MLflow's server) reads or writes artifact files."""
    if path == "/get-artifact" or path.startswith(
        _STORE_PREFIXES + _MPU_PREFIXES + _PRESIGNED_PREFIXES
    ):
        return True
    return method == "GET" and (path in _RUN_LISTINGS or bool(_LOGGED_MODEL_FILES.match(path)))


def artifact_request(method: str, path: str, query: dict[str, str]) -> ArtifactRequest:
    """The files ``method path?query`` reads or writes. InvalidParameterError for a path
    spelled so that it could name something else (``..``, double encodings, ...)."""
    write = method not in ("GET", "HEAD")
    for prefix in _STORE_PREFIXES:
        if path == prefix:  # a listing: ?path=
            return _in_store(query.get("path", ""), write)
        if path.startswith(prefix + "/"):
            return _in_store(path[len(prefix) + 1 :], write)
    for prefix in (*_MPU_PREFIXES, *_PRESIGNED_PREFIXES):
        if path.startswith(prefix):  # mpu: create|complete|abort/<artifact path>
            rest = path[len(prefix) :]
            if prefix in _MPU_PREFIXES:
                rest = rest.partition("/")[2]
            return _in_store(rest, True)
    if path in _RUN_LISTINGS:
        run_id = query.get("run_id") or query.get("run_uuid") or ""
        return _owned(RUN, run_id, query.get("path", ""), write)
    found = _LOGGED_MODEL_FILES.match(path)
    if found:
        sub = query.get("artifact_file_path") or query.get("artifact_directory_path") or ""
        return _owned(LOGGED_MODEL, found["id"], sub, write)
    return ArtifactRequest(None, write, path)


def store_path(uri: str) -> StorePath | None:
    """The store path of an ``mlflow-artifacts:`` URI (a run's root, a version's source);
    None for any other URI. InvalidParameterError for a badly spelled path."""
    parsed = urlparse(uri)
    if parsed.scheme != STORE_SCHEME:
        return None
    return StorePath(clean_parts(parsed.path))


def owner_candidates(parts: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """``(owner, id, n)`` for every place in a store path that may be the artifact root of
    a run or logged model (``parts[:n]``), outermost first: ``.../<run id>/artifacts`` and
    ``.../models/<model id>/artifacts``, by MLflow's id formats."""
    found = []
    for i in range(len(parts) - 1):
        if parts[i + 1] != "artifacts":
            continue
        if _RUN_ID.fullmatch(parts[i]):
            found.append((RUN, parts[i], i + 2))
        elif _MODEL_ID.fullmatch(parts[i]) and i >= 1 and parts[i - 1] == "models":
            found.append((LOGGED_MODEL, parts[i], i + 2))
    return found


def source_reference(source: str) -> ModelReference | ArtifactPath | None:
    """What a model version's ``source`` reads, as MLflow's own parsers read it: a registered
    model's version, a logged model (``models:/m-<id>``), a run's files (``runs:/``) or store
    files (``mlflow-artifacts:``); None for every other form (local paths, ``file:``,
    ``http(s):``, cloud stores) and for anything MLflow would refuse."""
    # Imported here: importing MLflow takes seconds, and `regserve up` listens before that.
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
    from mlflow.store.artifact.utils.models import _parse_model_uri

    parsed = urlparse(source)
    try:
        if parsed.scheme == "models" and not parsed.netloc:
            model = _parse_model_uri(source)
            if model.model_id is not None:
                return OwnedPath(LOGGED_MODEL, model.model_id, ())
            return ModelReference(model.name) if model.name else None
        if parsed.scheme == "runs" and not parsed.netloc:
            run_id, sub = RunsArtifactRepository.parse_runs_uri(source)  # type: ignore[no-untyped-call]
            return OwnedPath(RUN, run_id, clean_parts(sub or ""))
        return store_path(source)
    except (MlflowException, InvalidParameterError):
        return None


def clean_parts(path: str) -> tuple[str, ...]:
    """The segments of an artifact path; InvalidParameterError when it is spelled so that
    MLflow could read another path from it."""
    if unquote(path) != path:
        raise InvalidParameterError(
            f"Artifact path '{path}' is URL-encoded twice; send it encoded once."
        )
    if "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise InvalidParameterError(
            f"Artifact path {path!r} may not contain a backslash or a control character."
        )
    if urlparse(path).scheme:  # MLflow reads "file:x/y" as the path "x/y"
        raise InvalidParameterError(f"Artifact path '{path}' may not start with a URI scheme.")
    parts = tuple(p for p in path.split("/") if p and p != ".")
    if ".." in parts:
        raise InvalidParameterError(f"Artifact path '{path}' may not contain '..'.")
    return parts


def _in_store(path: str, write: bool) -> ArtifactRequest:
    parts = clean_parts(path)
    return ArtifactRequest(StorePath(parts) if parts else None, write, path)


def _owned(owner: str, owner_id: str, sub: str, write: bool) -> ArtifactRequest:
    parts = clean_parts(sub)
    if not owner_id:
        return ArtifactRequest(None, write, sub)
    return ArtifactRequest(OwnedPath(owner, owner_id, parts), write, sub)
