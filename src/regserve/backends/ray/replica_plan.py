"""A version's Serve deployment options, from its cluster's node type and tags.

Resources per replica come from the node type (``nodes.py``): a sized type (``local-small``
...) reserves its cores (``num_cpus``) and memory (``memory``) for each replica, so Ray
places replicas only where they fit; ``local-default`` (the whole machine, unbounded on the
local backend too) reserves nothing. Tags (``update-cluster-config``) refine it:

- ``regserve.replicas`` (default ``REGSERVE_REPLICAS``, 1): a fixed replica count (read with
  the other worker options, :class:`regserve.backends.options.ClusterOptions`);
- ``regserve.min_replicas`` / ``regserve.max_replicas``: autoscaling bounds (either turns
  autoscaling on; ``min_replicas=0`` scales to zero when idle, and the first request then
  waits for a replica, bounded by the request timeout);
- ``regserve.target_ongoing_requests`` (default 2): the load per replica autoscaling aims at;
- ``regserve.downscale_delay_s`` (Serve's default 600): idle seconds before scaling down;
- ``regserve.idle_timeout`` (``REGSERVE_IDLE_TIMEOUT``, 600 by default; ``never``): a fixed
  count autoscales from 0 to it, to zero after that many seconds without a request
  (:mod:`regserve.backends.ray.idle`);
- ``regserve.num_cpus`` / ``regserve.memory_mb``: override the node type's per-replica figures;
- ``regserve.max_ongoing_requests`` (default 256): requests one replica holds at once (its
  batcher combines them); more wait in the gateway's handle.

A tag that does not parse is ignored (the default applies) and logged, as batching tags are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from regserve.backends.options import ClusterOptions
from regserve.backends.ray.idle import describe_idle, idle_autoscaling
from regserve.backends.tags import bounded_number

__all__ = ["ReplicaPlan", "plan_replicas"]

_log = logging.getLogger("regserve.ray")

MIN_TAG = "regserve.min_replicas"
MAX_TAG = "regserve.max_replicas"
TARGET_TAG = "regserve.target_ongoing_requests"
DOWNSCALE_TAG = "regserve.downscale_delay_s"
CPUS_TAG = "regserve.num_cpus"
MEMORY_TAG = "regserve.memory_mb"
ONGOING_TAG = "regserve.max_ongoing_requests"
_LIMITS: dict[str, tuple[float, float]] = {
    MIN_TAG: (0, 256),
    MAX_TAG: (1, 256),
    TARGET_TAG: (0.1, 10_000),
    DOWNSCALE_TAG: (0, 86_400),
    CPUS_TAG: (0, 1024),
    MEMORY_TAG: (0, 16 * 1024 * 1024),
    ONGOING_TAG: (1, 100_000),
}
UNBOUNDED_NODE_TYPE = "local-default"


@dataclass(frozen=True)
class ReplicaPlan:
    """How many replicas a version runs and what each reserves."""

    num_cpus: float = 0.0
    memory_mb: int = 0
    num_replicas: int = 1
    autoscaling: Mapping[str, float] | None = None
    max_ongoing_requests: int = 256

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.memory_mb:
            actor["memory"] = self.memory_mb * 1024 * 1024
        options: dict[str, Any] = {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
        }
        if self.autoscaling is not None:
            options["autoscaling_config"] = dict(self.autoscaling)
        else:
            options["num_replicas"] = self.num_replicas
        return options

    def describe(self) -> str:
        if self.autoscaling is not None:
            low, high = self.autoscaling["min_replicas"], self.autoscaling["max_replicas"]
            count = describe_idle(self.autoscaling) or f"{low:g} to {high:g} replicas (autoscaling)"
        else:
            count = f"{self.num_replicas} replica{'s' if self.num_replicas != 1 else ''}"
        memory = f", {self.memory_mb} MB" if self.memory_mb else ""
        return f"{count}, {self.num_cpus:g} CPU{memory} each"


def plan_replicas(
    options: ClusterOptions, node_types: Mapping[str, Mapping[str, object]]
) -> ReplicaPlan:
    """The plan for a cluster with ``options`` (see the module doc): its replica count is
    :attr:`ClusterOptions.replicas`, the rest is read from its tags here."""
    values = dict(options.tags)
    cpus, memory = _node_resources(options.node_type_id, node_types)
    cpus = _number(values, CPUS_TAG, cpus)
    memory = _number(values, MEMORY_TAG, memory)
    ongoing = int(_number(values, ONGOING_TAG, 256))
    autoscaling: dict[str, float] | None = None
    if MIN_TAG in values or MAX_TAG in values:
        low = int(_number(values, MIN_TAG, 1))
        high = max(int(_number(values, MAX_TAG, max(low, 1))), low, 1)
        autoscaling = {
            "min_replicas": low,
            "max_replicas": high,
            "target_ongoing_requests": _number(values, TARGET_TAG, 2.0),
        }
        if DOWNSCALE_TAG in values:
            delay = _number(values, DOWNSCALE_TAG, 600.0)
            autoscaling["downscale_delay_s"] = delay
            autoscaling["downscale_to_zero_delay_s"] = delay
    autoscaling = idle_autoscaling(options, autoscaling)
    return ReplicaPlan(cpus, int(memory), options.replicas, autoscaling, ongoing)


def _node_resources(
    node_type_id: str, node_types: Mapping[str, Mapping[str, object]]
) -> tuple[float, float]:
    node = node_types.get(node_type_id)
    if node is None or node_type_id == UNBOUNDED_NODE_TYPE:
        return 0.0, 0.0
    cores = node.get("num_cores", 0)
    memory = node.get("memory_mb", 0)
    return (
        float(cores) if isinstance(cores, int | float) else 0.0,
        float(memory) if isinstance(memory, int | float) else 0.0,
    )


def _number(values: Mapping[str, str], tag: str, default: float) -> float:
    return bounded_number(values, tag, default, _LIMITS, _log)
