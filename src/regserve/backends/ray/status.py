"""Ray Serve's own status of a version's application, as regserve version states.

| Serve (deployment, or application when it has none yet) | version state |
|---|---|
| HEALTHY, UPSCALING, DOWNSCALING | READY (at zero replicas a request waits for one) |
| UPDATING, UNHEALTHY after having served, with replicas running | READY (they keep serving) |
| UPDATING, NOT_STARTED, DEPLOYING, no status yet | LAUNCHING |
| UPDATING, replicas not placed after Serve's 30 s | LAUNCHING: what one needs, what is free |
| UNHEALTHY | LAUNCHING: Serve replaces the unhealthy replicas |
| DEPLOY_FAILED: a node could not build the runtime_env | FAILED: node, uv's words, indexes |
| DEPLOY_FAILED (deployment or application) | FAILED with Serve's message |

A replica no node of the cluster can hold is found by regserve itself (``placement.py``), not
from Serve, which only says it waits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regserve.backends.ray.env_failure import explain_env_failure
from regserve.states import VersionState

__all__ = ["ServeView", "version_state"]


_SERVING = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})
_NOT_PLACED = re.compile(
    r"has (?P<count>\d+) replicas that have taken more than (?P<seconds>\d+)s to be scheduled\..*"
    r"Resources required for each replica: (?P<needed>\{.*?\}), "
    r"total resources available: (?P<free>\{.*?\})\.",
    re.DOTALL,
)


@dataclass(frozen=True)
class ServeView:
    """What ``serve.status()`` says about one version (plain strings, Serve's enum values)."""

    app_status: str | None
    app_message: str = ""
    deployment_status: str | None = None
    deployment_message: str = ""
    running_replicas: int = 0

    @property
    def settled(self) -> bool:
        """Serve has placed what it was asked for (nothing waits for a node)."""
        return self.deployment_status in _SERVING or "DEPLOY_FAILED" in (
            self.app_status,
            self.deployment_status,
        )


def version_state(
    view: ServeView, was_ready: bool = False, indexes: str = ""
) -> tuple[VersionState, str]:
    """(state, state message) for what Serve reports; ``was_ready``: the version
    has served before (its running replicas keep serving through an update); ``indexes``:
    the index options the nodes' uv was given (for a failed environment build)."""
    if view.app_status is None:
        return VersionState.LAUNCHING, "Waiting for Ray Serve to create the application."
    message = view.deployment_message or view.app_message
    if "DEPLOY_FAILED" in (view.app_status, view.deployment_status):
        explained = explain_env_failure(message, indexes)
        if explained is not None:
            return VersionState.FAILED, explained
        return (
            VersionState.FAILED,
            f"Ray Serve could not deploy this version: {message or 'no reason given'}",
        )
    status = view.deployment_status
    if status in _SERVING:
        if view.running_replicas == 0:
            return (
                VersionState.READY,
                "Serving on Ray Serve (scaled to zero: a request starts a replica).",
            )
        return VersionState.READY, f"Serving on Ray Serve ({_replicas(view.running_replicas)})."
    if was_ready and view.running_replicas > 0:
        # A rolling update (new config) or a replica being replaced: the others keep serving.
        why = "replacing unhealthy replicas" if status == "UNHEALTHY" else "updating replicas"
        return (
            VersionState.READY,
            f"Serving on Ray Serve ({_replicas(view.running_replicas)}) while {why}.",
        )
    if status == "UNHEALTHY":
        return (
            VersionState.LAUNCHING,
            f"Ray Serve is replacing unhealthy replicas: {message}".rstrip(": "),
        )
    not_placed = _NOT_PLACED.search(message)
    if not_placed is not None:
        return VersionState.LAUNCHING, (
            f"Waiting for room on the Ray cluster: {not_placed['count']} replica(s) not started "
            f"after {not_placed['seconds']} s. Each needs {not_placed['needed']}; free now: "
            f"{not_placed['free']} (or the replica's runtime_env is still being built)."
        )
    detail = f": {message}" if message else ""
    return (
        VersionState.LAUNCHING,
        f"Ray Serve is starting the replicas ({status or view.app_status}){detail}",
    )


def _replicas(count: int) -> str:
    return f"{count} replica{'s' if count != 1 else ''}"
