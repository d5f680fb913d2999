"""A big enable converges (issue 20, item 0): worker starts take turns, at most
REGSERVE_WORKER_START_PARALLELISM at once, the version a stage points at first, then one
called lately, then the newest; a start's timeout runs from its turn, not from when it began
to wait. Real registry, store, backend and workers, seen through the store's states and
events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from regserve.states import VersionState
from regserve.store import EventRecord
from tests.support.models import save_slow_loading_model
from tests.support.timing import eventually, scaled

from .conftest import Registry, Served, serving

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = json.dumps({"dataframe_records": [ROW]}).encode()
_ENDS = {"VERSION_READY", "VERSION_FAILED", "WORKER_CRASHED"}
"""Events that end a start (it serves, or it did not)."""


def _most_starting(events: list[EventRecord]) -> int:
    """The most versions starting at once, read from the events in order: from a start's
    WORKER_STARTING until its version is READY or failed."""
    starting: set[str | None] = set()
    most = 0
    for event in events:
        if event.event_type == "WORKER_STARTING":
            starting.add(event.version)
        elif event.event_type in _ENDS:
            starting.discard(event.version)
        most = max(most, len(starting))
    return most


def _all_ready(served: Served, name: str, count: int) -> Callable[[], bool]:
    """All ``count`` versions READY, and their VERSION_READY events recorded (the controller
    stores a state before the event that goes with it) and routed (published after both)."""

    def check() -> bool:
        versions = served.store.list_versions(name)
        if len(versions) != count or any(v.state is not VersionState.READY for v in versions):
            return False
        if not all(served.routed_ready(name, v.version) for v in versions):
            return False
        events = served.store.list_events(name)
        return sum(e.event_type == "VERSION_READY" for e in events) >= count

    return check


async def _watch(served: Served, name: str, seen: list[tuple[int, int]]) -> None:
    """Until cancelled: how many versions are starting (LAUNCHING) and waiting for a slot."""
    while True:
        versions = served.store.list_versions(name)
        launching = sum(v.state is VersionState.LAUNCHING for v in versions)
        waiting = sum("Waiting for a start slot" in v.state_message for v in versions)
        seen.append((launching, waiting))
        await asyncio.sleep(0.05)


async def test_ten_versions_start_two_at_a_time_the_production_one_first(
    registry: Registry, data_dir: Path
) -> None:
    name = "ctl-big"
    for _ in range(10):
        registry.register(name)
    registry.promote(name, "5", "Production")
    async with serving(registry, data_dir, worker_start_parallelism=2) as served:
        # v3 was called a minute ago (the gateway's per-minute aggregates, as a previous
        # regserve process flushed them): after the Production version, before the others
        minute = (int(time.time()) // 60 - 1) * 60_000
        traffic = {"requests": 3, "errors": 0, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0}
        served.store.add_metrics(
            [{"model_name": name, "version": "3", "minute": minute, **traffic}]
        )
        seen: list[tuple[int, int]] = []
        watch = asyncio.create_task(_watch(served, name, seen))
        await served.controller.enable(name)
        await eventually(_all_ready(served, name, 10), "all 10 versions READY", 180)
        watch.cancel()

        events = served.store.list_events(name)
        types = [e.event_type for e in events]
        assert types.count("WORKER_STARTING") == 10
        assert "WORKER_CRASHED" not in types
        assert _most_starting(events) == 2
        assert max(launching for launching, _ in seen) <= 2
        assert max(waiting for _, waiting in seen) > 0  # some did wait, and said so
        ready = [e.version for e in events if e.event_type == "VERSION_READY"]
        assert sorted(ready, key=int) == [str(v) for v in range(1, 11)]
        # The turns' order (READY's order also depends on each load's length on a busy machine)
        turns = [e.version for e in events if e.event_type == "WORKER_STARTING"]
        assert turns.index("5") < min(turns.index("1"), turns.index("2")), turns
        assert turns.index("3") < min(turns.index("1"), turns.index("2")), turns
        assert turns.index("10") < turns.index("1"), turns  # then the newest
        waited = [e for e in events if e.event_type == "WORKER_STARTING" and "waiting" in e.message]
        assert waited
        assert "ahead); at most 2 start at once" in waited[-1].message

        for version in map(str, range(1, 11)):
            target = served.router.resolve(name, version).target
            assert target is not None
            status, _, body = await target.request("application/json", BODY, 30)
            assert (status, json.loads(body)) == (200, {"predictions": [0]})


async def test_a_start_whose_turn_came_late_is_timed_from_its_turn(
    registry: Registry, data_dir: Path, tmp_path: Path
) -> None:
    name = "ctl-late"
    # Long enough for the model's warm process and v1 to come up on a busy 2-core machine.
    timeout = scaled(20)
    slow = save_slow_loading_model(tmp_path / "slow", 3.5)
    registry.register(name)  # iris: the model's warm process comes up with it
    settings = {"worker_start_parallelism": 1, "worker_start_timeout": timeout}
    async with serving(registry, data_dir, **settings) as served:
        await served.controller.enable(name)
        await eventually(_all_ready(served, name, 1), "v1 READY", 60)
        for _ in range(8):  # each loads 3.5 s, one at a time: the last waits over 24.5 s
            registry.register(name, slow)
        await served.controller.reconcile(name)
        await eventually(_all_ready(served, name, 9), "all 9 versions READY", 120)

        events = served.store.list_events(name)
        assert "WORKER_CRASHED" not in [e.event_type for e in events]
        assert _most_starting(events) == 1
        deploying = {e.version: e.timestamp for e in events if e.event_type == "VERSION_DEPLOYING"}
        turns = {e.version: e.timestamp for e in events if e.event_type == "WORKER_STARTING"}
        waits = {v: (turns[v] - deploying[v]) / 1000 for v in turns if v != "1"}
        assert max(waits.values()) > timeout, waits  # queued longer than the timeout, and served
        target = served.router.resolve(name, max(waits, key=waits.__getitem__)).target
        assert target is not None
        status, _, body = await target.request("application/json", BODY, 30)
        assert (status, json.loads(body)) == (200, {"predictions": [1]})
