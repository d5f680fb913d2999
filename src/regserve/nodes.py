"""The node types a serving cluster can be given (``/api/2.0/clusters/list-node-types``).

``local-default`` (this whole machine) comes first and is the default. The sized types are
budgets a cluster is meant to stay within; the local backend does not enforce them yet.
"""

from __future__ import annotations

import os

__all__ = ["default_node_types"]

_SIZED = (("local-small", 1, 2), ("local-medium", 2, 4), ("local-large", 4, 8))
"""(node_type_id, cores, GB of memory)."""


def _memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024))
    except (ValueError, OSError):
        return 0


def _node_type(memory_mb: int, cores: int, instance_type: str) -> dict[str, object]:
    return {
        "memory_mb": memory_mb,
        "num_cores": cores,
        "description": f"{memory_mb // 1024} GB Memory, {cores} Cores",
        "instance_type_id": instance_type,
    }


def default_node_types() -> dict[str, dict[str, object]]:
    """This machine (``local-default``), then small, medium and large budgets."""
    types = {"local-default": _node_type(_memory_mb(), os.cpu_count() or 1, "local")}
    for node_type_id, cores, gigabytes in _SIZED:
        types[node_type_id] = _node_type(gigabytes * 1024, cores, node_type_id)
    return types
