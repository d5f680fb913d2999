"""MemoryBudget: the loaded versions' memory, measured, and the least recently used versions
unloaded when it is over ``REGSERVE_MEMORY_BUDGET``.

- **What is measured**: every few seconds, the PSS (:mod:`.footprint`) of each served
  version's worker processes: its replicas and its template (with the template's standby),
  and of the shared workers. That sum is the *loaded memory* the budget bounds
  (``regserve_loaded_memory_bytes``). The models' warm processes (one per model and
  environment, kept while a version of it is served, idle or not) are measured apart
  (``regserve_warm_memory_bytes``) and are not in the budget: unloading a version does not
  give theirs back. Neither is regserve's own process.
- **What is unloaded**: when the loaded memory is over the budget, versions are unloaded in
  the order of their last use (their last request, or when they last became ready if that
  is later), the least recently used first, until what they held covers the excess. An
  unloaded version is idle exactly as after its idle timeout (its replicas and template
  stopped, READY, its next request loads it again), with ``VERSION_EVICTED`` instead of
  ``VERSION_IDLE`` and ``idle_reason`` ``MEMORY_BUDGET`` in ``list-versions``.
- **What never is**: a version with a request in flight, one whose replicas are not all
  ready (starting, restarting, or being replaced by a cluster update), and, the rule against
  thrashing, one that became ready less than ``REGSERVE_MEMORY_BUDGET_GRACE`` seconds ago
  (30 by default: started, restarted or woken by a request). When the versions that are used
  need more than the budget, memory stays over it rather than versions being unloaded and
  loaded again on every request: each woken version stays at least the grace, and the budget
  is a soft limit. Shared workers are measured but never unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from regserve.backends.local.footprint import pss_bytes
from regserve.worker.text import log_safe

__all__ = ["Candidate", "MemoryBudget", "MemoryReading", "Unloadable", "choose_victims"]

_log = logging.getLogger("regserve.supervisor")
_MIB = 1024 * 1024
_UNBUDGETED_EVERY = 15.0
"""Seconds between measurements without a budget (only ``/metrics`` reads them then)."""

T = TypeVar("T")


class Unloadable(Protocol):
    """A served version's replica set, as the budget sees it."""

    @property
    def label(self) -> str: ...

    @property
    def last_used(self) -> float:
        """Its last request, or when it last became ready if later (``time.monotonic``)."""

    @property
    def loaded_at(self) -> float | None:
        """When it last became ready (``time.monotonic``); None while it is not loaded."""

    def footprint_pids(self) -> list[int]:
        """Its worker processes: replicas, template and the template's standby."""

    def may_unload(self) -> bool:
        """Nothing in flight, every replica ready, not being replaced."""

    async def unload_for_budget(self, text: str) -> bool:
        """Unload it (``VERSION_EVICTED``, ``text``); False when it may not be now."""


@dataclass(frozen=True)
class Candidate(Generic[T]):
    """A loaded version: what it holds and when it was used."""

    item: T
    memory: int
    """Its PSS in bytes."""
    last_used: float
    loaded_at: float
    unloadable: bool


def choose_victims(
    candidates: Sequence[Candidate[T]], excess: int, grace: float, now: float
) -> list[Candidate[T]]:
    """The versions to unload to give back ``excess`` bytes: least recently used first,
    skipping those that may not be unloaded and those loaded less than ``grace`` seconds
    before ``now``. Fewer (or none) when the others cannot cover the excess."""
    victims: list[Candidate[T]] = []
    for candidate in sorted(candidates, key=lambda c: c.last_used):
        if excess <= 0:
            break
        if not candidate.unloadable or now - candidate.loaded_at < grace:
            continue
        victims.append(candidate)
        excess -= candidate.memory
    return victims


@dataclass(frozen=True)
class MemoryReading:
    """One measurement (``/metrics``)."""

    loaded_bytes: int
    """The versions' replicas, templates and shared workers: what the budget bounds."""
    warm_bytes: int
    """The models' warm processes (outside the budget)."""
    loaded_versions: int
    budget_bytes: int | None


class MemoryBudget:
    """Measures the workers' memory on a timer and unloads versions over the budget."""

    def __init__(
        self,
        budget: int | None,
        grace: float,
        sets: Callable[[], Sequence[Unloadable]],
        others: Callable[[], tuple[list[int], list[int]]],
    ) -> None:
        self.budget = budget
        self.grace = grace
        self._sets = sets
        """The replica sets that may be unloaded (the served versions')."""
        self._others = others
        """(pids in the budget that are never unloaded: shared workers, sets being brought
        up by a cluster update; pids outside it: warm processes)."""
        self.reading: MemoryReading | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="memory budget")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def check_every(self) -> float:
        """Seconds between measurements: a quarter of the grace, between 0.5 s and 5 s."""
        if self.budget is None:
            return _UNBUDGETED_EVERY
        return min(max(self.grace / 4, 0.5), 5.0)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a measurement that failed is taken again next time
                _log.exception("could not measure the workers' memory")
            await asyncio.sleep(self.check_every())

    async def check(self) -> list[str]:
        """Measure, then unload what is over the budget; the labels of the versions unloaded."""
        sets = list(self._sets())
        groups = [s.footprint_pids() for s in sets]
        fixed, outside = self._others()
        sizes, fixed_bytes, warm_bytes = await asyncio.to_thread(_measure, groups, fixed, outside)
        loaded = sum(sizes) + fixed_bytes
        now = time.monotonic()
        candidates = [
            Candidate(s, size, s.last_used, at, s.may_unload())
            for s, size in zip(sets, sizes, strict=True)
            if (at := s.loaded_at) is not None
        ]
        self.reading = MemoryReading(loaded, warm_bytes, len(candidates), self.budget)
        if self.budget is None or loaded <= self.budget:
            return []
        unloaded = []
        # One after another, least recently used first: the events come in that order, and
        # the stops do not all compete for the CPU at once.
        for victim in choose_victims(candidates, loaded - self.budget, self.grace, now):
            if await victim.item.unload_for_budget(self._explain(victim, loaded, now)):
                unloaded.append(victim.item.label)
        return unloaded

    def _explain(self, victim: Candidate[Unloadable], loaded: int, now: float) -> str:
        budget = self.budget or 0
        _log.info(
            "unloading %s for the memory budget (%.0f MiB loaded, budget %.0f MiB)",
            log_safe(victim.item.label),
            loaded / _MIB,
            budget / _MIB,
        )
        return (
            f"Unloaded for the memory budget: the loaded versions held {loaded / _MIB:.0f} MiB, "
            f"over REGSERVE_MEMORY_BUDGET ({budget / _MIB:.0f} MiB); this one "
            f"({victim.memory / _MIB:.0f} MiB) was the least recently used that could go, "
            f"last used {now - victim.last_used:.0f} s ago. Its next request loads it again."
        )


def _measure(
    groups: list[list[int]], fixed: list[int], outside: list[int]
) -> tuple[list[int], int, int]:
    """PSS of each group, of ``fixed`` and of ``outside`` (off the event loop)."""
    sizes = [sum(pss_bytes(pid) for pid in set(group)) for group in groups]
    return sizes, sum(pss_bytes(p) for p in set(fixed)), sum(pss_bytes(p) for p in set(outside))
