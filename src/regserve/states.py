"""The states of a served model (endpoint) and of its versions, and how one follows from the other.

The values are the contract's strings (``VERSION_STATE_READY``...): they are what the control
API answers, what the store keeps and what clients compare, so a member is a ``str`` and
compares equal to its value. Imports nothing of regserve: the client uses it too.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from enum import Enum

__all__ = ["EndpointState", "VersionState", "endpoint_state", "short_state"]

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        """``enum.StrEnum`` of Python 3.11: ``str()`` and ``format()`` give the value."""

        def __str__(self) -> str:
            return str.__str__(self)

        def __format__(self, format_spec: str) -> str:
            return str.__format__(self, format_spec)


class VersionState(StrEnum):
    """A served version's state (of one replica, too, on the local backend)."""

    PENDING = "VERSION_STATE_PENDING"
    LAUNCHING = "VERSION_STATE_LAUNCHING"
    READY = "VERSION_STATE_READY"
    FAILED = "VERSION_STATE_FAILED"


class EndpointState(StrEnum):
    """A served model's state, from its versions' (:func:`endpoint_state`)."""

    PENDING = "ENDPOINT_STATE_PENDING"
    READY = "ENDPOINT_STATE_READY"
    FAILED = "ENDPOINT_STATE_FAILED"


_PREFIXES = ("VERSION_STATE_", "ENDPOINT_STATE_")


def short_state(state: str) -> str:
    """A state as the CLI and the UI show it, without its prefix: ``READY``. A string that is
    no state (a newer server's) is shown as it is."""
    for prefix in _PREFIXES:
        if state.startswith(prefix):
            return state[len(prefix) :]
    return state


def endpoint_state(
    versions: Mapping[str, tuple[VersionState, str]],
) -> tuple[EndpointState, str]:
    """The endpoint's (state, message) from its active versions' (state, message).

    READY as soon as one version serves (or when there is none: the cluster stays up, as on
    Databricks); FAILED only when every version failed; PENDING while none is ready yet.
    """
    if not versions:
        return (
            EndpointState.READY,
            "Serving cluster is up; the model has no active version to serve.",
        )
    ready = _having(versions, VersionState.READY)
    failed = _having(versions, VersionState.FAILED)
    pending = sorted(set(versions) - set(ready) - set(failed), key=int)
    parts = []
    if ready:
        parts.append(f"ready: {_names(ready)}")
    if pending:
        parts.append(f"starting: {_names(pending)}")
    if failed:
        parts.append(f"failed: {_names(failed)}")
    summary = "; ".join(parts)
    if len(ready) == len(versions):
        served = f"{len(ready)} version" + ("s" if len(ready) > 1 else "")
        return EndpointState.READY, f"Serving {served} ({summary})."
    if ready:
        return EndpointState.READY, f"Serving {len(ready)} of {len(versions)} versions ({summary})."
    if not pending:
        first = failed[0]
        return EndpointState.FAILED, f"Every version failed ({summary}). {versions[first][1]}"
    return EndpointState.PENDING, f"Deploying versions ({summary})."


def _having(versions: Mapping[str, tuple[VersionState, str]], state: VersionState) -> list[str]:
    return sorted((v for v, (s, _) in versions.items() if s == state), key=int)


def _names(versions: list[str]) -> str:
    return ", ".join(f"v{v}" for v in versions)
