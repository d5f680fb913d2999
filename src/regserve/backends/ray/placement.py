"""Can the cluster place a version's replicas at all?

Serve keeps a replica that fits on no node pending for ever, and only says after 30 s that it
"may be waiting for the cluster to auto-scale or for a runtime environment". regserve compares
what one replica reserves (``ReplicaPlan.request``) with each live node's total resources
(``ray.nodes()``): when no node could ever hold one, or a hard per-node limit
(``regserve.max_replicas_per_node``) needs more nodes than can hold one, the version is FAILED
with both sides named. The check is made again while the version waits, so a node that joins
later (an autoscaler's) starts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from regserve.backends.ray.replica_plan import ReplicaPlan

__all__ = ["describe_resources", "placement_problem"]

_MIB = 1024 * 1024
_SHOWN_NODES = 5


def placement_problem(plan: ReplicaPlan, nodes: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the cluster's live ``nodes`` (``ray.nodes()`` entries) cannot run ``plan``, or None."""
    request = plan.request()
    alive = [n for n in nodes if n.get("Alive")]
    fits = [n for n in alive if _holds(_resources(n), request)]
    if not fits:
        offers = "; ".join(
            f"{_node_name(n)}: {describe_resources(_resources(n), request)}"
            for n in alive[:_SHOWN_NODES]
        )
        return (
            "No node of the Ray cluster can hold a replica of this version: each needs "
            f"{describe_resources(request)}, and the nodes have {offers or 'none alive'}. "
            "Choose a smaller node type or other resource tags (update-cluster-config), or add "
            "a node that has them: the version starts when one joins."
        )
    per_node = plan.max_replicas_per_node
    wanted = plan.num_replicas
    if plan.autoscaling is not None:
        wanted = int(plan.autoscaling["min_replicas"])
    if per_node is not None and wanted > per_node * len(fits):
        return (
            f"{wanted} replicas at most {per_node} per node (regserve.max_replicas_per_node) "
            f"need {-(-wanted // per_node)} nodes that can hold one; the Ray cluster has "
            f"{len(fits)} ({', '.join(_node_name(n) for n in fits[:_SHOWN_NODES])})."
        )
    return None


def describe_resources(
    resources: Mapping[str, float], only: Mapping[str, float] | None = None
) -> str:
    """``2 CPU, 2048 MiB memory, 1 GPU``; with ``only``, the resources it names (0 if absent)."""
    names = list(only) if only is not None else list(resources)
    if not names:
        return "nothing"
    parts = []
    for name in names:
        amount = resources.get(name, 0.0)
        if name == "memory":
            parts.append(f"{amount / _MIB:.0f} MiB memory")
        else:
            parts.append(f"{amount:g} {name}")
    return ", ".join(parts)


def _resources(node: Mapping[str, Any]) -> Mapping[str, float]:
    found = node.get("Resources")
    return found if isinstance(found, Mapping) else {}


def _holds(total: Mapping[str, float], request: Mapping[str, float]) -> bool:
    return all(total.get(name, 0.0) >= amount for name, amount in request.items())


def _node_name(node: Mapping[str, Any]) -> str:
    node_id = str(node.get("NodeID", ""))[:8]
    return f"node {node.get('NodeManagerAddress', '?')} ({node_id})"
