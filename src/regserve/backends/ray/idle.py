"""Idle versions on Ray: ``regserve.idle_timeout`` as Serve's autoscaling to zero, and what
Serve's replica counts say about it (events, ``list-versions``).

The local backend stops an idle version's workers itself (:mod:`regserve.backends.local.idle`);
on Ray the same settings are given to Serve, whose autoscaler sees the load of every gateway
(sampled every few seconds, not request by request: docs/scale-out.md says what differs):

- a version with a fixed replica count N (``regserve.replicas``) and an idle timeout T
  (``regserve.idle_timeout``, ``REGSERVE_IDLE_TIMEOUT``) is deployed with autoscaling from 0 to
  N: N replicas at first and while it has requests (the load aimed at per replica is tiny, so
  any request keeps all N; scaling up has no delay), none once Serve measured no request for T
  (``downscale_delay_s``; Serve scales to zero only from one replica, so with N > 1 the step
  from one to none has no delay of its own: ``downscale_to_zero_delay_s`` 0);
- ``never`` (or 0) keeps the fixed count: the version is never scaled to zero;
- explicit autoscaling tags (``regserve.min_replicas`` / ``max_replicas``, see
  :mod:`.replica_plan`) are Serve's own knobs and win: with ``min_replicas`` 0 the delay before
  zero is T when an idle timeout is set (the ``regserve.idle_timeout`` tag over
  ``regserve.downscale_delay_s``, that over the setting); with ``min_replicas`` >= 1 the
  version is never idle.

When Serve scales a READY version to zero, the backend records ``VERSION_IDLE`` and when a
replica runs again ``VERSION_WOKEN`` (:func:`idle_event`); the version stays READY (Serve
holds its first request until a replica has loaded the model). The lead's
:class:`IdleRayTarget` says whether it is loaded and when its last request came, for
``list-versions``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from regserve.backends.options import IDLE_TIMEOUT_TAG, ClusterOptions
from regserve.backends.ray.target import RayTarget
from regserve.worker import wire

__all__ = ["IDLE_REASON", "IdleRayTarget", "describe_idle", "idle_autoscaling", "idle_event"]

IDLE_REASON = "IDLE_TIMEOUT"
"""The only reason Serve scales a version to zero (there is no memory budget on Ray)."""
ANY_LOAD = 0.001
"""``target_ongoing_requests`` of a fixed count made idle: any measured load asks for N."""
_DOWNSCALE_TAG = "regserve.downscale_delay_s"


def idle_autoscaling(
    options: ClusterOptions, autoscaling: dict[str, float] | None
) -> dict[str, float] | None:
    """The autoscaling config with the idle timeout applied (see the module doc): ``None``
    (a fixed count) stays fixed when the version never idles."""
    timeout = options.idle_timeout
    if autoscaling is None:
        if timeout is None:
            return None
        count = options.replicas
        return {
            "min_replicas": 0,
            "initial_replicas": count,
            "max_replicas": count,
            "target_ongoing_requests": ANY_LOAD,
            "upscale_delay_s": 0.0,
            "downscale_delay_s": timeout,
            "downscale_to_zero_delay_s": timeout if count == 1 else 0.0,
        }
    if autoscaling.get("min_replicas") != 0 or timeout is None:
        return autoscaling
    tags = dict(options.tags)
    if IDLE_TIMEOUT_TAG in tags or _DOWNSCALE_TAG not in tags:
        return {**autoscaling, "downscale_to_zero_delay_s": timeout}
    return autoscaling


def describe_idle(autoscaling: Mapping[str, float]) -> str | None:
    """How a fixed count made idle is described in events (None: another autoscaling)."""
    if autoscaling.get("target_ongoing_requests") != ANY_LOAD:
        return None
    count = int(autoscaling["max_replicas"])
    delay = autoscaling["downscale_delay_s"]
    return f"{count} replica{'s' if count != 1 else ''} (none after {delay:g} s without a request)"


def idle_event(number: str, before: int, after: int) -> tuple[str, str] | None:
    """The event for a READY version whose running replicas went from ``before`` to
    ``after`` (-1: not known yet), when it went idle or woke; None otherwise."""
    if after == 0 and before > 0:
        return (
            "VERSION_IDLE",
            f"Ray Serve scaled version {number} to zero replicas: no request for its idle "
            "timeout (tag regserve.idle_timeout, REGSERVE_IDLE_TIMEOUT, or the autoscaling "
            "tags); its next request loads it again.",
        )
    if before == 0 and after > 0:
        return (
            "VERSION_WOKEN",
            f"Ray Serve started version {number} again ({after} replica"
            f"{'s' if after != 1 else ''}) for a request.",
        )
    return None


class IdleRayTarget(RayTarget):
    """The lead's target of a version: Serve's handle, and whether the version is loaded
    (set by the backend from Serve's replica counts) and when its last request came."""

    def __init__(self, handle: Any, label: str, app: str = "", deployment: str = "") -> None:
        super().__init__(handle, label, app, deployment)
        self.idle = False
        """Serve runs no replica of it (a request starts one)."""
        self.last_request: float | None = None
        """When its last request through this gateway arrived (``time.time()``)."""

    @property
    def idle_reason(self) -> str | None:
        return IDLE_REASON if self.idle else None

    async def request(self, content_type: str | None, body: bytes, timeout: float) -> wire.Response:
        self.last_request = time.time()
        return await super().request(content_type, body, timeout)
