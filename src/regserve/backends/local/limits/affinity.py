"""Cluster limits without cgroups: CPU affinity and a per-process memory limit.

Where regserve cannot create cgroups (not root, no cgroup filesystem), a cluster's workers
are pinned to ``ceil(cores)`` of this machine's cores (the same ones for every worker of the
model) and each worker's data segment is capped at the node type's memory with
``RLIMIT_DATA``. That caps each worker, not their sum: two workers may use twice the memory.
``RLIMIT_DATA`` rather than ``RLIMIT_AS``: the address space counts what is reserved and never
used (an iris worker reserves about 700 MiB to use 250 MiB), so it would refuse models that
fit. A worker over its limit sees a failed allocation (MemoryError), not a kill.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
from pathlib import Path

from regserve.backends.local.limits.budget import Budget

__all__ = ["AffinityCluster", "affinity_available"]

_OUT_OF_MEMORY = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "Unable to allocate")


def affinity_available() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(resource, "prlimit")


class AffinityCluster:
    """One cluster's cores (by affinity) and per-worker memory cap (by rlimit)."""

    name = "CPU affinity and per-process memory limit"

    def __init__(self, model: str, budget: Budget) -> None:
        self.budget = budget
        self._cores = _pick_cores(model, budget.whole_cores)
        self._placed: set[int] = set()

    @property
    def cores(self) -> set[int]:
        return set(self._cores)

    @property
    def summary(self) -> str:
        cores = (
            f"pinned to {len(self._cores)} of {len(_usable())} cores"
            if self._cores
            else "no CPU limit"
        )
        memory = (
            f"{self.budget.describe_memory()} per worker (RLIMIT_DATA)"
            if self.budget.memory_bytes is not None
            else "no memory limit"
        )
        return f"CPU affinity and process limits, {cores}, {memory}"

    def place(self, pid: int) -> None:
        if self._cores:
            os.sched_setaffinity(pid, self._cores)
        if self.budget.memory_bytes is not None:
            limit = self.budget.memory_bytes
            resource.prlimit(pid, resource.RLIMIT_DATA, (limit, limit))
        self._placed.add(pid)

    def pids(self) -> set[int]:
        self._placed = {pid for pid in self._placed if _alive(pid)}
        return set(self._placed)

    def explain_exit(self, pid: int, returncode: int | None, log_tail: str = "") -> str | None:
        self._placed.discard(pid)
        if self.budget.memory_bytes is None or not any(s in log_tail for s in _OUT_OF_MEMORY):
            return None
        return f"ran out of memory: {self.budget.oom_message('the worker')}, per process"

    def close(self) -> bool:
        return not self.pids()


def _usable() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def _pick_cores(model: str, count: int) -> set[int]:
    """``count`` of the cores regserve may use, starting at one chosen by the model's name
    (so that models spread over the machine); all of them when ``count`` covers them."""
    usable = _usable()
    if count == 0 or count >= len(usable):
        return set() if count == 0 else set(usable)
    start = int(hashlib.sha1(model.encode()).hexdigest(), 16) % len(usable)
    return {usable[(start + i) % len(usable)] for i in range(count)}


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return False
