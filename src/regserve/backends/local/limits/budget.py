"""What one cluster may use, and the contract every limit mechanism's cluster keeps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from regserve.nodes import NodeType

__all__ = ["Budget", "ClusterLimits", "LimitsUnavailableError", "Unlimited"]

_MIB = 1024 * 1024


class LimitsUnavailableError(RuntimeError):
    """The limit mechanism asked for (``REGSERVE_RESOURCE_LIMITS``) cannot be used here."""


@dataclass(frozen=True)
class Budget:
    """A node type's cores and memory; None where it sets no limit."""

    node_type_id: str
    cores: float | None
    memory_bytes: int | None
    max_pids: int | None = None
    """Processes and threads the cluster may have at once (``REGSERVE_CLUSTER_MAX_PIDS``)."""

    @classmethod
    def of(cls, node_type: NodeType, max_pids: int | None = None) -> Budget:
        memory = node_type.memory_mb * _MIB if node_type.memory_mb is not None else None
        return cls(node_type.node_type_id, node_type.cores, memory, max_pids)

    @property
    def limited(self) -> bool:
        return self.cores is not None or self.memory_bytes is not None

    @property
    def whole_cores(self) -> int:
        """The cores to pin to where only whole ones can be given (affinity)."""
        return max(1, math.ceil(self.cores)) if self.cores is not None else 0

    def describe_cores(self) -> str:
        if self.cores is None:
            return "no CPU limit"
        count = int(self.cores) if float(self.cores).is_integer() else self.cores
        return f"{count} core" if count == 1 else f"{count} cores"

    def describe_memory(self) -> str:
        if self.memory_bytes is None:
            return "no memory limit"
        return f"{self.memory_bytes // _MIB} MiB"

    def oom_message(self, what: str = "the cluster") -> str:
        """How a worker killed for this budget's memory is described (after 'was killed: ')."""
        return (
            f"{what} used its {self.describe_memory()} memory limit (node type {self.node_type_id})"
        )


class ClusterLimits(Protocol):
    """The limits of one generation of one model's cluster, shared by all its workers.

    A cluster whose node type changes gets a new generation beside the old one; each is
    closed when its last worker is gone.
    """

    budget: Budget

    @property
    def summary(self) -> str:
        """The mechanism and the limits, for the operator ("cgroup v1, 1 core, 2048 MiB")."""

    def place(self, pid: int) -> None:
        """Put a just-spawned worker under the limits (raises OSError when it cannot)."""

    def pids(self) -> set[int]:
        """The processes under these limits now (empty where the mechanism cannot tell)."""

    def explain_exit(self, pid: int, returncode: int | None, log_tail: str = "") -> str | None:
        """Why the worker exited when these limits killed it ("was killed: ..."), else None."""

    def close(self) -> bool:
        """Release the limits; False while a process is still under them (call again later)."""


class Unlimited:
    """No limits: ``local-default`` (the whole machine), or enforcement switched off."""

    def __init__(self, budget: Budget, why: str) -> None:
        self.budget = budget
        self._why = why

    @property
    def summary(self) -> str:
        return self._why

    def place(self, pid: int) -> None:
        return None

    def pids(self) -> set[int]:
        return set()

    def explain_exit(self, pid: int, returncode: int | None, log_tail: str = "") -> str | None:
        return None

    def close(self) -> bool:
        return True
