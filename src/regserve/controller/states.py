"""State names and how an endpoint's state follows from its versions' states."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ENDPOINT_FAILED",
    "ENDPOINT_PENDING",
    "ENDPOINT_READY",
    "VERSION_FAILED",
    "VERSION_LAUNCHING",
    "VERSION_PENDING",
    "VERSION_READY",
    "endpoint_state",
]

ENDPOINT_PENDING = "ENDPOINT_STATE_PENDING"
ENDPOINT_READY = "ENDPOINT_STATE_READY"
ENDPOINT_FAILED = "ENDPOINT_STATE_FAILED"
VERSION_PENDING = "VERSION_STATE_PENDING"
VERSION_LAUNCHING = "VERSION_STATE_LAUNCHING"
VERSION_READY = "VERSION_STATE_READY"
VERSION_FAILED = "VERSION_STATE_FAILED"


def endpoint_state(versions: Mapping[str, tuple[str, str]]) -> tuple[str, str]:
    """The endpoint's (state, message) from its active versions' (state, message).

    READY as soon as one version serves (or when there is none: the cluster stays up, as on
    Databricks); FAILED only when every version failed; PENDING while none is ready yet.
    """
    if not versions:
        return ENDPOINT_READY, "Serving cluster is up; the model has no active version to serve."
    ready = sorted((v for v, (s, _) in versions.items() if s == VERSION_READY), key=int)
    failed = sorted((v for v, (s, _) in versions.items() if s == VERSION_FAILED), key=int)
    pending = sorted(set(versions) - set(ready) - set(failed), key=int)
    parts = []
    if ready:
        parts.append(f"ready: {_names(ready)}")
    if pending:
        parts.append(f"starting: {_names(pending)}")
    if failed:
        parts.append(f"failed: {_names(failed)}")
    summary = "; ".join(parts)
    if ready:
        return ENDPOINT_READY, f"Serving {len(ready)} of {len(versions)} versions ({summary})."
    if not pending:
        first = failed[0]
        return ENDPOINT_FAILED, f"Every version failed ({summary}). {versions[first][1]}"
    return ENDPOINT_PENDING, f"Deploying versions ({summary})."


def _names(versions: list[str]) -> str:
    return ", ".join(f"v{v}" for v in versions)
