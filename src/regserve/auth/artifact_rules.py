"""Which files of a run or logged model a tracking artifact request touches, and whether a
registered model version's source lies under them.

Tracking is open to every principal (logging a model needs it), but the files a registered
model version was created from are the model: reading them needs CAN_READ on the registered
model, and changing or deleting them needs CAN_MANAGE (they are what a Production URL serves).
This module is pure: it turns a request into an :class:`ArtifactTarget` and a version's
``source`` into the location of its files; ``gateway/registry_guard.py`` asks the registry
which versions' sources contain the target.

Artifacts live in MLflow's artifact store under ``<experiment location>/<run_id>/artifacts/...``
for runs and ``<experiment location>/models/<model_id>/artifacts/...`` for MLflow 3's logged
models; MLflow names runs with 32 hex digits and logged models ``m-`` and 32 hex digits, which is
how the owner of a path is recognised wherever the experiment keeps its artifacts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

from regserve.errors import InvalidParameterError

__all__ = [
    "ArtifactLocation",
    "ArtifactTarget",
    "artifact_target",
    "is_artifact_route",
    "source_location",
]

_RUN_ID = re.compile(r"[0-9a-f]{32}")
_MODEL_ID = re.compile(r"m-[0-9a-f]{32}")
_STORE_PREFIXES = (
    "/api/2.0/mlflow-artifacts/artifacts",
    "/ajax-api/2.0/mlflow-artifacts/artifacts",
)
_MPU_PREFIXES = ("/api/2.0/mlflow-artifacts/mpu/", "/ajax-api/2.0/mlflow-artifacts/mpu/")
_LOGGED_MODEL_FILES = re.compile(
    r"^/(?:ajax-)?api/2\.0/mlflow/logged-models/(?P<id>[^/]+)/artifacts/(?:files|directories)$"
)
_RUN_LISTINGS = frozenset({
    "/get-artifact", "/api/2.0/mlflow/artifacts/list", "/ajax-api/2.0/mlflow/artifacts/list",
})  # fmt: skip


@dataclass(frozen=True)
class ArtifactLocation:
    """Files of one run or logged model: ``path`` relative to its artifact root."""

    owner: str
    """``"run"`` or ``"logged_model"``."""
    owner_id: str
    path: str
    """``""`` is the whole artifact root."""

    def contains(self, other: ArtifactLocation) -> bool:
        """Whether ``other`` is this location or lies beneath it."""
        if (self.owner, self.owner_id) != (other.owner, other.owner_id):
            return False
        return not self.path or other.path == self.path or other.path.startswith(self.path + "/")


@dataclass(frozen=True)
class ArtifactTarget:
    """What an artifact request touches, and whether it changes it."""

    location: ArtifactLocation
    write: bool


def is_artifact_route(method: str, path: str) -> bool:
    """Whether ``method path`` (of MLflow's server) reads or writes artifact files."""
    if path == "/get-artifact" or path.startswith(_STORE_PREFIXES + _MPU_PREFIXES):
        return True
    return method == "GET" and (path in _RUN_LISTINGS or bool(_LOGGED_MODEL_FILES.match(path)))


def artifact_target(method: str, path: str, query: dict[str, str]) -> ArtifactTarget | None:
    """The files ``method path?query`` reads or writes; None when it names no run's or logged
    model's files (a listing of the experiment's folder, say). InvalidParameterError for a
    path that climbs out of its folder."""
    write = method not in ("GET", "HEAD")
    for prefix in _STORE_PREFIXES:
        if path == prefix:  # a listing: ?path=
            return _target(_store_location(query.get("path", "")), write)
        if path.startswith(prefix + "/"):
            return _target(_store_location(path[len(prefix) + 1 :]), write)
    for prefix in _MPU_PREFIXES:
        if path.startswith(prefix):  # create|complete|abort/<artifact path>
            _, _, rest = path[len(prefix) :].partition("/")
            return _target(_store_location(rest), True)
    if path in _RUN_LISTINGS:
        run_id = query.get("run_id") or query.get("run_uuid") or ""
        return _target(_owned("run", run_id, query.get("path", "")), write)
    found = _LOGGED_MODEL_FILES.match(path)
    if found:
        sub = query.get("artifact_file_path") or query.get("artifact_directory_path") or ""
        return _target(_owned("logged_model", found["id"], sub), write)
    return None


def source_location(source: str) -> ArtifactLocation | None:
    """Where a model version's ``source`` keeps its files, when that is a run's or a logged
    model's artifacts (``models:/m-...``, ``runs:/<run>/<path>``, or a URI naming either)."""
    if source.startswith("models:/") and _MODEL_ID.fullmatch(source[len("models:/") :]):
        return ArtifactLocation("logged_model", source[len("models:/") :], "")
    if source.startswith("runs:/"):
        run_id, _, sub = source[len("runs:/") :].partition("/")
        return _owned("run", run_id, sub) if _RUN_ID.fullmatch(run_id) else None
    parsed = urlparse(source)
    try:
        return _store_location(parsed.path if parsed.scheme else source)
    except InvalidParameterError:
        return None


def _target(location: ArtifactLocation | None, write: bool) -> ArtifactTarget | None:
    return ArtifactTarget(location, write) if location is not None else None


def _owned(owner: str, owner_id: str, sub: str) -> ArtifactLocation | None:
    if not owner_id:
        return None
    return ArtifactLocation(owner, owner_id, "/".join(_segments(sub)))


def _store_location(path: str) -> ArtifactLocation | None:
    """The run or logged model whose files ``path`` (relative to the artifact store) names."""
    parts = _segments(path)
    for i in range(1, len(parts)):
        if parts[i] != "artifacts":
            continue
        owner_id = parts[i - 1]
        sub = "/".join(parts[i + 1 :])
        if _MODEL_ID.fullmatch(owner_id) and i >= 2 and parts[i - 2] == "models":
            return ArtifactLocation("logged_model", owner_id, sub)
        if _RUN_ID.fullmatch(owner_id):
            return ArtifactLocation("run", owner_id, sub)
    return None


def _segments(path: str) -> list[str]:
    parts = [p for p in path.replace("\\", "/").split("/") if p and p != "."]
    if ".." in parts:
        raise InvalidParameterError(f"Artifact path '{path}' may not contain '..'.")
    return parts
