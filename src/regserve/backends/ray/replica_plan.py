"""A version's Serve deployment options, from its cluster's node type and tags.

Resources per replica come from the node type (``nodes.py``): a sized type (``local-small``
...) reserves its cores (``num_cpus``), memory (``memory``), GPUs (``num_gpus``) and custom Ray
resources (``resources``) for each replica, so Ray places replicas only where they fit;
``local-default`` (the whole machine, unbounded on the local backend too) reserves nothing.

Replicas spread across nodes: Serve's scheduler places a deployment's replicas with Ray's
SPREAD strategy (soft: on one node all of them still run there). ``regserve.max_replicas_per_node``
makes it a hard rule (Serve's ``max_replicas_per_node``): replicas beyond it wait for another
node. Tags (``update-cluster-config``) refine it:

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
- ``regserve.num_cpus`` / ``regserve.memory_mb`` / ``regserve.num_gpus``: override the node
  type's per-replica figures;
- ``regserve.max_replicas_per_node``: at most this many replicas of the version on one node;
- ``regserve.max_ongoing_requests`` (default 256): requests one replica holds at once (its
  batcher combines them); more wait in the gateway's handle.

A tag that does not parse is ignored (the default applies) and logged, as batching tags are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regserve.backends.options import ClusterOptions
from regserve.backends.ray.idle import describe_idle, idle_autoscaling
from regserve.backends.tags import bounded_number
from regserve.nodes import NodeType

__all__ = ["ReplicaPlan", "plan_replicas"]

_log = logging.getLogger("regserve.ray")

MIN_TAG = "regserve.min_replicas"
MAX_TAG = "regserve.max_replicas"
TARGET_TAG = "regserve.target_ongoing_requests"
DOWNSCALE_TAG = "regserve.downscale_delay_s"
CPUS_TAG = "regserve.num_cpus"
MEMORY_TAG = "regserve.memory_mb"
ONGOING_TAG = "regserve.max_ongoing_requests"
GPUS_TAG = "regserve.num_gpus"
PER_NODE_TAG = "regserve.max_replicas_per_node"
_LIMITS: dict[str, tuple[float, float]] = {
    MIN_TAG: (0, 256),
    MAX_TAG: (1, 256),
    TARGET_TAG: (0.1, 10_000),
    DOWNSCALE_TAG: (0, 86_400),
    CPUS_TAG: (0, 1024),
    MEMORY_TAG: (0, 16 * 1024 * 1024),
    ONGOING_TAG: (1, 100_000),
    GPUS_TAG: (0, 64),
    PER_NODE_TAG: (1, 256),
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
    num_gpus: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    max_replicas_per_node: int | None = None

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.memory_mb:
            actor["memory"] = self.memory_mb * 1024 * 1024
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        if self.resources:
            actor["resources"] = dict(self.resources)
        options: dict[str, Any] = {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
        }
        if self.max_replicas_per_node is not None:
            options["max_replicas_per_node"] = self.max_replicas_per_node
        if self.autoscaling is not None:
            options["autoscaling_config"] = dict(self.autoscaling)
        else:
            options["num_replicas"] = self.num_replicas
        return options

    def request(self) -> dict[str, float]:
        """What one replica reserves, in Ray's resource names (memory in bytes)."""
        wanted = {"CPU": self.num_cpus, "memory": float(self.memory_mb * 1024 * 1024)}
        wanted.update(GPU=self.num_gpus, **self.resources)
        return {name: amount for name, amount in wanted.items() if amount > 0}

    def describe(self) -> str:
        if self.autoscaling is not None:
            low, high = self.autoscaling["min_replicas"], self.autoscaling["max_replicas"]
            count = describe_idle(self.autoscaling) or f"{low:g} to {high:g} replicas (autoscaling)"
        else:
            count = f"{self.num_replicas} replica{'s' if self.num_replicas != 1 else ''}"
        memory = f", {self.memory_mb} MB" if self.memory_mb else ""
        gpus = f", {self.num_gpus:g} GPU" if self.num_gpus else ""
        custom = "".join(f", {amount:g} {name}" for name, amount in self.resources.items())
        spread = (
            f"; at most {self.max_replicas_per_node} per node"
            if self.max_replicas_per_node is not None
            else ""
        )
        return f"{count}, {self.num_cpus:g} CPU{memory}{gpus}{custom} each{spread}"


def plan_replicas(options: ClusterOptions, node_types: Mapping[str, NodeType]) -> ReplicaPlan:
    """The plan for a cluster with ``options`` (see the module doc): its replica count is
    :attr:`ClusterOptions.replicas`, the rest is read from its tags here."""
    values = dict(options.tags)
    node = node_types.get(options.node_type_id)
    if node is None or options.node_type_id == UNBOUNDED_NODE_TYPE:
        node = NodeType(UNBOUNDED_NODE_TYPE, None, None, "")
    cpus = _number(values, CPUS_TAG, node.cores or 0.0)
    memory = _number(values, MEMORY_TAG, node.memory_mb or 0)
    gpus = _number(values, GPUS_TAG, node.gpus)
    per_node = int(_number(values, PER_NODE_TAG, 0)) or None
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
    return ReplicaPlan(
        cpus,
        int(memory),
        options.replicas,
        autoscaling,
        ongoing,
        gpus,
        dict(node.ray_resources),
        per_node,
    )


def _number(values: Mapping[str, str], tag: str, default: float) -> float:
    return bounded_number(values, tag, default, _LIMITS, _log)
