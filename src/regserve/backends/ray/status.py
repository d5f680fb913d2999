"""Ray Serve's own status of a version's application, as regserve version states.

| Serve (deployment, or application when it has none yet) | version state |
|---|---|
| HEALTHY, UPSCALING, DOWNSCALING | READY (at zero replicas a request waits for one) |
| UPDATING, UNHEALTHY after having served, with replicas running | READY (they keep serving) |
| UPDATING, NOT_STARTED, DEPLOYING, no status yet | LAUNCHING |
| UNHEALTHY | LAUNCHING: Serve replaces the unhealthy replicas |
| DEPLOY_FAILED (deployment or application) | FAILED with Serve's message |
"""

from __future__ import annotations

from dataclasses import dataclass

from regserve.states import VersionState

__all__ = ["ServeView", "version_state"]


_SERVING = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})


@dataclass(frozen=True)
class ServeView:
    """What ``serve.status()`` says about one version (plain strings, Serve's enum values)."""

    app_status: str | None
    app_message: str = ""
    deployment_status: str | None = None
    deployment_message: str = ""
    running_replicas: int = 0


def version_state(view: ServeView, was_ready: bool = False) -> tuple[VersionState, str]:
    """(state, state message) for what Serve reports; ``was_ready``: the version
    has served before (its running replicas keep serving through an update)."""
    if view.app_status is None:
        return VersionState.LAUNCHING, "Waiting for Ray Serve to create the application."
    message = view.deployment_message or view.app_message
    if "DEPLOY_FAILED" in (view.app_status, view.deployment_status):
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
    detail = f": {message}" if message else ""
    return (
        VersionState.LAUNCHING,
        f"Ray Serve is starting the replicas ({status or view.app_status}){detail}",
    )


def _replicas(count: int) -> str:
    return f"{count} replica{'s' if count != 1 else ''}"
