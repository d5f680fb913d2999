"""IdleClock: when a replica set last had a request, and when it has been idle long enough to
give its memory back.

A version with no request for ``regserve.idle_timeout`` seconds (``REGSERVE_IDLE_TIMEOUT``,
600 by default; ``never`` or 0 keeps it loaded) has its replicas and its template stopped by
its :class:`~regserve.backends.local.replicas.ReplicaSet` (``VERSION_IDLE``). The set stays
the version's target and the version stays READY in every API and URL: its next request
starts it again (the template forked from the model's warm process, which idling leaves
running, so a wake costs a model load), waits for it as a request waits for a restarting
replica, and is answered (``VERSION_WOKEN``). Concurrent requests share one wake.

A set unloaded for the memory budget (:mod:`regserve.backends.local.memory_budget`,
``VERSION_EVICTED``) is idle in the same way; :class:`IdleReason` says which.
"""

from __future__ import annotations

import enum
import time

__all__ = ["BUDGET_MESSAGE", "IDLE_MESSAGE", "WAKING_MESSAGE", "IdleClock", "IdleReason"]

IDLE_MESSAGE = "Idle, loaded on the next request."
BUDGET_MESSAGE = "Idle (unloaded for the memory budget), loaded on the next request."
WAKING_MESSAGE = "Idle, loading the model for a request."


class IdleReason(str, enum.Enum):
    """Why a set's workers were stopped (``idle_reason`` in ``list-versions``)."""

    IDLE_TIMEOUT = "IDLE_TIMEOUT"
    MEMORY_BUDGET = "MEMORY_BUDGET"


class IdleClock:
    """The time of a set's last request, against its idle timeout (None: never idle)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._last = time.monotonic()
        self.last_request: float | None = None
        """When the last request arrived (``time.time()``), None before the first."""

    def touch(self) -> None:
        """The set became ready: idleness counts from now."""
        self._last = time.monotonic()

    def requested(self) -> None:
        """A request arrived: idleness counts from now."""
        self._last = time.monotonic()
        self.last_request = time.time()

    @property
    def last_used(self) -> float:
        """The last request, or when the set last became ready if later (``time.monotonic``):
        what the memory budget orders versions by."""
        return self._last

    def idle_for(self) -> float:
        return time.monotonic() - self._last

    def due(self) -> bool:
        """Idle for at least the timeout."""
        return self.timeout is not None and self.idle_for() >= self.timeout

    def check_every(self) -> float:
        """How often the set looks (a fraction of the timeout, at most a second)."""
        return min(max((self.timeout or 1.0) / 8, 0.05), 1.0)
