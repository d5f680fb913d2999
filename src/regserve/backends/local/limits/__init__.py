"""Node types as real resource boundaries on the local backend.

A node type is the budget of a model's whole cluster, shared by all its workers. It is
enforced with cgroup v2 where cpu and memory are delegated to regserve, else cgroup v1, else
CPU affinity and a per-process memory limit (``REGSERVE_RESOURCE_LIMITS`` picks one). See
docs/node-types.md.
"""

from regserve.backends.local.limits.budget import (
    Budget,
    ClusterLimits,
    LimitsUnavailableError,
    Unlimited,
)
from regserve.backends.local.limits.host import ResourceLimits

__all__ = ["Budget", "ClusterLimits", "LimitsUnavailableError", "ResourceLimits", "Unlimited"]
