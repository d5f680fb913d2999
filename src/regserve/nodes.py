"""The node types a serving cluster can be given (``/api/2.0/clusters/list-node-types``)."""

from __future__ import annotations

import os

__all__ = ["default_node_types"]


def _memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024))
    except (ValueError, OSError):
        return 0


def default_node_types() -> dict[str, dict[str, object]]:
    """One node type: this machine. Resource-bounded node types come with cgroup support."""
    cores = os.cpu_count() or 1
    memory_mb = _memory_mb()
    return {
        "local-default": {
            "memory_mb": memory_mb,
            "num_cores": cores,
            "description": f"{memory_mb // 1024} GB Memory, {cores} Cores",
            "instance_type_id": "local",
        }
    }
