"""Taking over the Serve applications a previous regserve process left (``RayBackend.adopt``).

On a cluster regserve did not start (``--ray-address``) a version's application outlives the
process that deployed it: SIGTERM and SIGHUP (``regserve restart``) leave it running, and the
next process takes it over instead of redeploying it. To tell which application is which,
each deployment carries regserve's :class:`Mark` as its ``user_config`` (Serve keeps it in the
deployment's config and hands it to ``ScoringReplica.reconfigure``, which ignores it): the
installation that deployed it (``owner``: a digest of its state store, shared by its
gateways), the model and version, and a fingerprint of everything the deployment was made
from (its options and runtime_env, the replica's arguments, the version's ``MLmodel`` and the
worker package's sources). An application is adopted only when its mark is the one the new
process would deploy now; otherwise it is deployed again (``serve.run`` replaces the
application of that name). Applications with no mark, or another installation's, are never
touched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import regserve.worker
from regserve.settings import Settings

__all__ = ["Mark", "RunningApp", "fingerprint", "owner_of", "running_apps"]

_MARK_KEY = "regserve"


@dataclass(frozen=True)
class Mark:
    """Who deployed an application, and from what."""

    owner: str
    model: str
    version: str
    fingerprint: str

    def to_user_config(self) -> dict[str, dict[str, str]]:
        return {_MARK_KEY: {k: str(v) for k, v in self.__dict__.items()}}

    @classmethod
    def from_user_config(cls, config: object) -> Mark | None:
        """The mark in a deployment's ``user_config``; None for anything else."""
        if not isinstance(config, Mapping) or not isinstance(config.get(_MARK_KEY), Mapping):
            return None
        fields = config[_MARK_KEY]
        try:
            return cls(*(str(fields[k]) for k in ("owner", "model", "version", "fingerprint")))
        except KeyError:
            return None


@dataclass(frozen=True)
class RunningApp:
    """A Serve application on the cluster, as the Serve controller describes it."""

    name: str
    mark: Mark | None
    replica_ids: tuple[str, ...] = ()
    """Its RUNNING replicas."""


def owner_of(settings: Settings) -> str:
    """The installation: every gateway of one state store (its URI, or the data dir of the
    default SQLite store) gets the same digest."""
    store = settings.store_uri or str(settings.resolved_data_dir())
    return hashlib.sha256(store.encode()).hexdigest()[:16]


def fingerprint(options: Mapping[str, Any], args: Sequence[Any], model_path: Path) -> str:
    """A digest of what a deployment is made from; '' when the model's files are missing
    (nothing to compare with: the version is deployed again, which downloads them)."""
    try:
        mlmodel = hashlib.sha256((model_path / "MLmodel").read_bytes()).hexdigest()
    except OSError:
        return ""
    env = dict(options.get("ray_actor_options", {}).get("runtime_env") or {})
    # regserve's package is named by its upload's URI, a digest of the directory that also
    # covers bytecode caches written since: the worker's sources stand for it instead.
    env.pop("py_modules", None)
    actor = {k: v for k, v in options.get("ray_actor_options", {}).items() if k != "runtime_env"}
    shown = {
        "options": {**options, "ray_actor_options": actor},
        "runtime_env": env,
        "args": list(args),
        "mlmodel": mlmodel,
        "worker": _worker_digest(),
    }
    text = json.dumps(shown, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@cache
def _worker_digest() -> str:
    """The sources of ``regserve.worker`` (what a replica runs)."""
    digest = hashlib.sha256()
    root = Path(regserve.worker.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def running_apps() -> dict[str, RunningApp]:
    """Every Serve application on the cluster, with its mark (blocking; Ray connected).

    One call to the Serve controller (``get_serve_details``, what ``serve status`` shows):
    Serve's public API does not give a deployment's config back.
    """
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:  # Serve is not running on the cluster: nothing deployed
        return {}
    details = client.get_serve_details()
    found: dict[str, RunningApp] = {}
    for name, app in (details.get("applications") or {}).items():
        deployments = list((app.get("deployments") or {}).values())
        if len(deployments) != 1:  # regserve's applications have exactly one
            found[name] = RunningApp(name, None)
            continue
        deployment = deployments[0]
        config = deployment.get("deployment_config") or {}
        replicas = tuple(
            str(r.get("replica_id"))
            for r in deployment.get("replicas") or []
            if str(r.get("state")) in ("RUNNING", "ReplicaState.RUNNING")
        )
        found[name] = RunningApp(name, Mark.from_user_config(config.get("user_config")), replicas)
    return found
