"""The memory budget: which versions it unloads (the least recently used, never one with a request
in flight, never one loaded less than the grace ago) on a fake clock, then on real replica sets
with real workers measured from /proc: the victim is unloaded as an idle version is (READY,
``VERSION_EVICTED``, ``idle_reason`` MEMORY_BUDGET) and its next request wakes it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from regserve.backends.base import VersionSpec
from regserve.backends.local.backend import LocalBackend
from regserve.backends.local.footprint import pss_bytes
from regserve.backends.local.idle import BUDGET_MESSAGE, IdleReason
from regserve.backends.local.memory_budget import Candidate, MemoryBudget, choose_victims
from regserve.backends.local.replicas import ReplicaSet
from regserve.settings import Settings
from regserve.states import VersionState
from regserve.store import ClusterConfig
from tests.support.processes import alive
from tests.support.timing import eventually, scaled

from .conftest import Events

MIB = 1024 * 1024
ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
BODY = json.dumps({"dataframe_records": [ROW]}).encode()


def loaded(name: str, memory_mib: int, last_used: float, loaded_at: float = 0.0) -> Candidate[str]:
    return Candidate(name, memory_mib * MIB, last_used, loaded_at, unloadable=True)


# -- the choice, on a fake clock -------------------------------------------------------------------


def test_the_least_recently_used_go_first_until_the_excess_is_covered() -> None:
    versions = [loaded("a", 100, 50.0), loaded("b", 100, 10.0), loaded("c", 100, 30.0)]
    chosen = choose_victims(versions, excess=150 * MIB, grace=30, now=1000.0)
    assert [c.item for c in chosen] == ["b", "c"]
    assert [c.item for c in choose_victims(versions, 1, 30, 1000.0)] == ["b"]
    assert choose_victims(versions, 0, 30, 1000.0) == []


def test_busy_versions_are_skipped_for_the_next_least_recently_used() -> None:
    busy = Candidate("b", 100 * MIB, 10.0, 0.0, unloadable=False)  # a request in flight
    chosen = choose_victims([busy, loaded("a", 100, 50.0)], 1, 30, 1000.0)
    assert [c.item for c in chosen] == ["a"]


def test_a_version_loaded_within_the_grace_is_not_unloaded() -> None:
    # "b" is the least recently used but was woken 10 s ago: it stays; "a" goes instead.
    woken = loaded("b", 100, last_used=990.0, loaded_at=990.0)
    old = loaded("a", 100, last_used=995.0, loaded_at=100.0)
    assert [c.item for c in choose_victims([woken, old], 1, grace=30, now=1000.0)] == ["a"]
    # Once the grace is over, it is the first to go.
    assert [c.item for c in choose_victims([woken, old], 1, 30, now=1021.0)] == ["b"]
    # All in their grace: memory stays over the budget rather than versions thrashing.
    assert choose_victims([woken], 1, 30, now=1000.0) == []


# -- real replica sets -----------------------------------------------------------------------------


@pytest.fixture
async def backend(settings: Settings, events: Events) -> AsyncIterator[LocalBackend]:
    quiet = settings.model_copy(
        update={"resource_limits": "off", "env_manager": "local", "idle_timeout": 0}
    )
    backend = LocalBackend(quiet, events)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


async def serve(backend: LocalBackend, model: Path, versions: list[str]) -> list[ReplicaSet]:
    await backend.start_cluster("iris", ClusterConfig("local-default", ()))
    for version in versions:
        await backend.deploy(VersionSpec("iris", version, model))
    sets: list[ReplicaSet] = []
    for version in versions:
        await eventually(lambda v=version: backend.target("iris", v) is not None, f"v{version}")
        target = backend.target("iris", version)
        assert isinstance(target, ReplicaSet)
        sets.append(target)
    return sets


async def call(replicas: ReplicaSet) -> None:
    response = await replicas.request("application/json", BODY, scaled(60))
    assert response.status == 200, response


async def test_real_versions_over_the_budget_lose_the_least_recently_used(
    backend: LocalBackend, events: Events, iris_model_dir: Path
) -> None:
    one, two, three = await serve(backend, iris_model_dir, ["1", "2", "3"])
    for replicas in (one, three, two):  # least recently used: 1, then 3
        await call(replicas)
    budget = MemoryBudget(None, 0.0, lambda: [one, two, three], lambda: ([], []))
    assert await budget.check() == []  # no budget: measured only
    reading = budget.reading
    assert reading is not None
    assert reading.loaded_versions == 3
    measured = sum(pss_bytes(p) for s in (one, two, three) for p in s.footprint_pids())
    assert reading.loaded_bytes == pytest.approx(measured, rel=0.2)
    assert reading.loaded_bytes > 3 * MIB  # three loaded models, measured from /proc
    victim_pids = one.footprint_pids()
    assert len(victim_pids) >= 2  # its replica, its template (and the template's standby)

    sizes = [sum(pss_bytes(p) for p in s.footprint_pids()) for s in (one, two, three)]
    budget.budget = sum(sizes) - min(sizes) // 2  # one version has to go
    assert await budget.check() == [one.label]
    assert one.idle
    assert one.idle_reason is IdleReason.MEMORY_BUDGET
    assert not two.idle
    assert not three.idle
    await eventually(lambda: not any(alive(pid) for pid in victim_pids), "its workers gone", 30)
    assert one.summary() == (VersionState.READY, BUDGET_MESSAGE)
    assert backend.target("iris", "1") is one  # still routed
    evicted = [e for e in events if e.event_type == "VERSION_EVICTED"]
    assert [(e.version, e.state) for e in evicted] == [("1", VersionState.READY)]
    assert "Unloaded for the memory budget" in evicted[0].message
    assert "least recently used" in evicted[0].message
    assert one.last_request is not None
    assert one.last_request <= time.time()

    # Its next request wakes it; just woken, it is not the victim the next time (the grace),
    # though it is now the least recently used: version 3 goes instead.
    await call(one)
    assert not one.idle
    assert one.idle_reason is None
    await call(two)
    woken_at, three_at = one.loaded_at, three.loaded_at
    assert woken_at is not None
    assert three_at is not None
    budget.grace = (time.monotonic() - three_at + time.monotonic() - woken_at) / 2
    budget.budget = 1
    budget.reading = None
    three_pids = three.footprint_pids()
    unloaded = await budget.check()
    assert one.label not in unloaded
    assert unloaded[0] == three.label
    await eventually(lambda: not any(alive(pid) for pid in three_pids), "v3's workers gone", 30)
    assert not one.idle
