"""What the hosted MLflow server's routes require, decided from the method and path alone.

Every request that reaches MLflow's server through regserve is classified here. The table is
an allow list: a route not named below is for admins only, so a route MLflow adds in a later
release is closed until someone classifies it.

- Registry routes on one registered model need a level on that model (the name is read from
  the query string for GET and the JSON body otherwise, as MLflow itself reads it).
- Creating a registered model is open to every principal; the creator gets CAN_MANAGE.
- Searches are open to every principal and their answers are filtered to readable models.
- Tracking (experiments, runs, metrics) is open to every principal: logging a model needs
  it, and regserve has no experiment ACLs (docs/security.md). Creating a run or a logged model
  records the caller as its owner.
- Files are not open: artifact requests are classified ARTIFACT, allowed only inside the files
  of a run or logged model the caller may read or change (``artifact_rules.py``,
  ``gateway/registry_files.py``). Changing a logged model is its owner's (and CAN_MANAGE on
  every model registered from it); its ``mlflow.modelVersions`` tag is cut to readable models.
- Creating a version also needs the right to read its source.
- GraphQL (``POST /graphql``, which MLflow's web UI reads runs with) is open to the reads
  ``graphql_rules.py`` allows; a ``GET /graphql`` is for admins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from regserve.auth.artifact_rules import LOGGED_MODEL, RUN, is_artifact_route
from regserve.auth.levels import PermissionLevel

__all__ = ["Access", "RegistryRule", "classify"]

_READ = PermissionLevel.CAN_READ
_EDIT = PermissionLevel.CAN_EDIT
_PROD = PermissionLevel.CAN_MANAGE_PRODUCTION_VERSIONS
_MANAGE = PermissionLevel.CAN_MANAGE


class Access(Enum):
    ADMIN = "admin"
    """Admins only: everything not classified otherwise."""
    ANY = "any"
    """Any authenticated principal."""
    MODEL = "model"
    """``level`` on the model named by the request's ``name``."""
    CREATE = "create"
    """Any principal; on success the creator gets CAN_MANAGE."""
    SEARCH = "search"
    """Any principal; the answer's ``filter_key`` list is cut to readable models."""
    TRANSITION = "transition"
    """The stage levels of the target stage and of the version's current stage."""
    ARTIFACT = "artifact"
    """Files inside a run or logged model the caller may read (to read) or change (to write,
    upload or delete); nothing else but for admins (``registry_files.py``)."""
    OWNED = "owned"
    """Any principal; on success the created run or logged model (``effect``) is the caller's."""
    CREATE_VERSION = "create_version"
    """``level`` on the model, and the right to read the version's source."""
    LOGGED_MODEL = "logged_model"
    """Changes logged model ``owner_id``: its owner's (admins: anyone's). With ``level``
    CAN_MANAGE (delete, status) also CAN_MANAGE on every registered model with a version made
    from it; tags and params annotate it (the server keeps its ``mlflow.modelVersions``)."""
    LOGGED_MODEL_READ = "logged_model_read"
    """Any principal; the ``mlflow.modelVersions`` tag of the answer names only models the
    caller may read, and searches may not filter on it."""
    GRAPHQL = "graphql"
    """Admins: anything; others: the tracking reads of ``graphql_rules.py`` (what MLflow's web
    UI asks), with the runs' ``modelVersions`` cut to readable models."""


@dataclass(frozen=True)
class RegistryRule:
    access: Access
    level: PermissionLevel = PermissionLevel.NONE
    effect: str | None = None
    """``renamed`` or ``deleted``: the ACL follows the model once MLflow has said yes;
    ``run`` or ``logged_model`` (OWNED): what the request creates."""
    filter_key: str | None = None
    owner_id: str = ""
    """LOGGED_MODEL: the logged model the request changes."""


_MODEL_RULES: dict[tuple[str, str], RegistryRule] = {
    ("GET", "registered-models/get"): RegistryRule(Access.MODEL, _READ),
    ("GET", "registered-models/get-latest-versions"): RegistryRule(Access.MODEL, _READ),
    ("POST", "registered-models/get-latest-versions"): RegistryRule(Access.MODEL, _READ),
    ("GET", "registered-models/alias"): RegistryRule(Access.MODEL, _READ),
    # An alias moves a serving URL (/model/{name}/@alias) as a Production move does.
    ("POST", "registered-models/alias"): RegistryRule(Access.MODEL, _PROD),
    ("DELETE", "registered-models/alias"): RegistryRule(Access.MODEL, _PROD),
    ("PATCH", "registered-models/update"): RegistryRule(Access.MODEL, _EDIT),
    ("POST", "registered-models/set-tag"): RegistryRule(Access.MODEL, _EDIT),
    ("DELETE", "registered-models/delete-tag"): RegistryRule(Access.MODEL, _EDIT),
    ("POST", "registered-models/rename"): RegistryRule(Access.MODEL, _MANAGE, "renamed"),
    ("DELETE", "registered-models/delete"): RegistryRule(Access.MODEL, _MANAGE, "deleted"),
    ("POST", "registered-models/create"): RegistryRule(Access.CREATE),
    ("GET", "registered-models/search"): RegistryRule(
        Access.SEARCH, filter_key="registered_models"
    ),
    ("POST", "model-versions/create"): RegistryRule(Access.CREATE_VERSION, _EDIT),
    ("POST", "runs/create"): RegistryRule(Access.OWNED, effect=RUN),
    ("POST", "runs/create-promptlab-run"): RegistryRule(Access.OWNED, effect=RUN),
    ("POST", "logged-models"): RegistryRule(Access.OWNED, effect=LOGGED_MODEL),
    ("POST", "logged-models/search"): RegistryRule(Access.LOGGED_MODEL_READ),
    ("GET", "model-versions/get"): RegistryRule(Access.MODEL, _READ),
    ("GET", "model-versions/get-download-uri"): RegistryRule(Access.MODEL, _READ),
    ("PATCH", "model-versions/update"): RegistryRule(Access.MODEL, _EDIT),
    ("POST", "model-versions/set-tag"): RegistryRule(Access.MODEL, _EDIT),
    ("DELETE", "model-versions/delete-tag"): RegistryRule(Access.MODEL, _EDIT),
    ("DELETE", "model-versions/delete"): RegistryRule(Access.MODEL, _MANAGE),
    ("POST", "model-versions/transition-stage"): RegistryRule(Access.TRANSITION),
    ("GET", "model-versions/search"): RegistryRule(Access.SEARCH, filter_key="model_versions"),
}
_MLFLOW_PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/")
_PREVIEW = {
    "/api/2.0/preview/mlflow/": "/api/2.0/mlflow/",
    "/ajax-api/2.0/preview/mlflow/": "/ajax-api/2.0/mlflow/",
}
_TRACKING_OPS = ("experiments/", "runs/", "metrics/")
# logged-models/<id>, .../params, .../tags, .../tags/<key>: (method, suffix) -> reads?
_LOGGED_MODEL_OP = re.compile(r"^logged-models/(?P<id>[^/]+)(?P<rest>/params|/tags(?:/.+)?)?$")
_LOGGED_MODEL_OPS = {  # None: reads it; else the level a change needs on registered models
    ("GET", ""): None,
    ("PATCH", ""): _MANAGE,
    ("DELETE", ""): _MANAGE,
    ("POST", "/params"): PermissionLevel.NONE,
    ("PATCH", "/tags"): PermissionLevel.NONE,
    ("DELETE", "/tags/"): PermissionLevel.NONE,
}
_ANY_EXACT = frozenset(
    {
        "/",
        "/version",
        "/api/3.0/mlflow/server-info",
        "/ajax-api/3.0/mlflow/server-info",
    }
)
_ADMIN = RegistryRule(Access.ADMIN)
_ANY = RegistryRule(Access.ANY)
_ARTIFACT = RegistryRule(Access.ARTIFACT)
_GRAPHQL_PATH = "/graphql"


def normalize(path: str) -> str:
    """The path MLflow serves for ``path``: Databricks' ``/preview/mlflow/`` prefix is
    served as ``/mlflow/`` (Databricks clients use both)."""
    for preview, plain in _PREVIEW.items():
        if path.startswith(preview):
            return plain + path[len(preview) :]
    return path


def classify(method: str, path: str) -> RegistryRule:
    """The rule for a request to MLflow's server (``path`` already normalized)."""
    method = method.upper()
    if method == "HEAD":
        method = "GET"
    if path in ("/model-versions/get-artifact", "/ajax-api/2.0/mlflow/model-versions/get-artifact"):
        return RegistryRule(Access.MODEL, _READ) if method == "GET" else _ADMIN
    if is_artifact_route(method, path):
        return _ARTIFACT
    if path == _GRAPHQL_PATH and method == "POST":
        return RegistryRule(Access.GRAPHQL)
    for prefix in _MLFLOW_PREFIXES:
        if path.startswith(prefix):
            return _classify_op(method, path[len(prefix) :])
    if path in _ANY_EXACT or path.startswith("/static-files/"):
        return _ANY
    return _ADMIN


def _classify_op(method: str, op: str) -> RegistryRule:
    rule = _MODEL_RULES.get((method, op))
    if rule is not None:
        return rule
    found = _LOGGED_MODEL_OP.match(op)
    if found:
        rest = found["rest"] or ""
        key = (method, "/tags/" if rest.startswith("/tags/") else rest)
        if key not in _LOGGED_MODEL_OPS:
            return _ADMIN
        level = _LOGGED_MODEL_OPS[key]
        if level is None:
            return RegistryRule(Access.LOGGED_MODEL_READ)
        return RegistryRule(Access.LOGGED_MODEL, level, owner_id=found["id"])
    if op.startswith(_TRACKING_OPS):
        return _ANY
    return _ADMIN
