"""Blue-green cluster updates on the local backend: the new cluster comes up beside the old.

1. Every version's replicas are started under the new config (a new cluster generation, so
   new sockets), quietly: their state changes reach nobody while the old ones serve.
2. Once the new replicas of every version that is READY now are all READY, traffic moves,
   all versions at once: the backend's routes name the new sets, and each old set hands the
   requests that still reach it to its successor.
3. The old sets drain (their in-flight requests are answered) and stop.

When a new replica fails (crashes ``max_restarts`` times) or the new cluster is not READY
within ``REGSERVE_CLUSTER_UPDATE_TIMEOUT``, the new workers are stopped, nothing moves, and
:class:`ClusterUpdateError` says why. A version that is not READY in the old cluster
(starting, failed) does not hold the update back; it is replaced like the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from regserve.backends.base import ClusterUpdateError, VersionEvent
from regserve.backends.local.replicas import ReplicaSet

__all__ = ["bring_up", "quiet", "retire"]

_POLL = 0.1


def quiet(event: VersionEvent) -> None:
    """The listener of a set being prepared: its states are not the version's yet."""


async def bring_up(
    current: Mapping[str, ReplicaSet], staged: Mapping[str, ReplicaSet], timeout: float
) -> None:
    """Start ``staged`` (version -> new set) and wait until it may take over from ``current``.

    ``staged`` may lose versions meanwhile (a version undeployed during the update)."""
    for new in list(staged.values()):
        new.start()
    deadline = time.monotonic() + timeout
    while True:
        waiting = {
            v: new for v, new in list(staged.items()) if current[v].ready and not new.all_ready()
        }
        for version, new in sorted(waiting.items()):
            failure = new.failure()
            if failure is not None:
                raise ClusterUpdateError(f"the new workers of version {version} failed: {failure}")
        if not waiting:
            return
        if time.monotonic() > deadline:
            late = "; ".join(
                f"version {v}: {new.summary()[1]}" for v, new in sorted(waiting.items())
            )
            raise ClusterUpdateError(
                f"the new workers were not READY within {timeout:g} s "
                f"(REGSERVE_CLUSTER_UPDATE_TIMEOUT): {late}"
            )
        await asyncio.sleep(_POLL)


async def retire(old: ReplicaSet, new: ReplicaSet, drain_timeout: float) -> None:
    """Hand ``old``'s traffic to ``new``, let its in-flight requests finish, stop it."""
    old.retire(new)
    old.listener = quiet  # its replicas' states are no longer the version's
    state, summary = new.summary()
    text = (
        f"Version {new.spec.version} moved to the new cluster (worker pids "
        f"{_pids(new)}); the previous workers (pids {_pids(old)}) finish their requests "
        "and stop."
    )
    new.listener(
        VersionEvent(
            new.spec.model_name,
            new.spec.version,
            state,
            summary,
            "VERSION_UPDATED",
            text,
            next(iter(new.pids()), None),
        )
    )
    await old.drain(drain_timeout)
    await old.stop()


def _pids(replicas: ReplicaSet) -> str:
    return ", ".join(str(p) for p in replicas.pids()) or "none"
