"""A version's ReplicaSet in process, with real worker processes: start, a replica killed and
restarted while the other serves, a version that cannot load, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from regserve.backends.base import VersionSpec
from regserve.backends.local.replicas import ReplicaSet
from regserve.backends.local.start_queue import StartPriority, StartQueue, Urgency
from regserve.errors import UnavailableError
from regserve.sandbox import Isolation
from regserve.settings import Settings
from regserve.states import VersionState
from tests.support.processes import alive
from tests.support.timing import eventually

from .conftest import Events

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = json.dumps({"dataframe_records": [ROW]}).encode()


def new_set(
    settings: Settings,
    model: Path,
    count: int,
    events: Events,
    starts: StartQueue | None = None,
    version: str = "1",
) -> ReplicaSet:
    sandbox = Isolation(settings, settings.resolved_data_dir()).sandbox_for("iris")
    spec = VersionSpec("iris", version, model)
    return ReplicaSet(settings, spec, count, 0, list, events, sandbox=sandbox, starts=starts)


@pytest.fixture
async def two(
    settings: Settings, iris_model_dir: Path, events: Events
) -> AsyncIterator[ReplicaSet]:
    """Two replicas of iris v1, both READY."""
    replicas = new_set(settings, iris_model_dir, 2, events)
    replicas.start()
    try:
        await eventually(replicas.all_ready, "both replicas ready")
        yield replicas
    finally:
        await replicas.stop()


async def test_two_replicas_start_and_answer(two: ReplicaSet, events: Events) -> None:
    assert two.state is VersionState.READY
    assert two.summary() == (VersionState.READY, "2 of 2 replicas ready.")
    assert sorted(events.types()) == ["REPLICA_READY", "VERSION_READY"]
    assert events[-1].state is VersionState.READY
    assert len(set(two.pids())) == 2
    status, _, body = await two.request("application/json", BODY, 30)
    assert status == 200
    assert json.loads(body) == {"predictions": [0]}


async def test_a_killed_replica_is_restarted_while_the_other_serves(
    two: ReplicaSet, events: Events
) -> None:
    killed, other = two.pids()
    os.kill(killed, signal.SIGKILL)
    await eventually(lambda: "WORKER_CRASHED" in events.types(), "crash reported")
    crashed = next(e for e in events if e.event_type == "WORKER_CRASHED")
    assert crashed.message.startswith("Replica 1: Worker pid")
    assert "restarting now (restart 1 of 2)" in crashed.message
    assert (await two.request("application/json", BODY, 30)).status == 200  # replica 2 serves
    await eventually(lambda: "WORKER_RESTARTED" in events.types(), "replica 1 restarted")
    await eventually(two.all_ready, "both replicas ready again")
    assert other in two.pids()
    assert killed not in two.pids()
    assert not alive(killed)
    restarted = next(e for e in events if e.event_type == "WORKER_RESTARTED")
    assert restarted.message.startswith("Replica 1: Worker restarted (pid ")


async def test_stop_ends_every_worker_and_refuses_requests(
    settings: Settings, iris_model_dir: Path, events: Events
) -> None:
    replicas = new_set(settings, iris_model_dir, 2, events)
    replicas.start()
    try:
        await eventually(replicas.all_ready, "both replicas ready")
        pids = replicas.pids()
        sockets = [Path(s) for s in replicas.sockets()]
    finally:
        await replicas.stop()
    assert not any(alive(pid) for pid in pids)
    assert not any(s.exists() for s in sockets)
    with pytest.raises(UnavailableError, match="retry shortly"):
        await replicas.request("application/json", BODY, 5)


async def test_a_version_that_cannot_load_fails_after_its_restarts(
    settings: Settings, tmp_path: Path, events: Events
) -> None:
    replicas = new_set(settings, tmp_path / "no-model-here", 1, events)
    replicas.start()
    try:
        await eventually(lambda: replicas.state is VersionState.FAILED, "FAILED")
    finally:
        await replicas.stop()
    assert events.types() == ["WORKER_CRASHED", "WORKER_CRASHED", "VERSION_FAILED"]
    state, message = replicas.summary()
    assert state is VersionState.FAILED
    assert "it crashed 3 times in a row" in message
    assert "exited with code 3 (the model could not be loaded)" in message
    assert (replicas.failure() or "").startswith("replica 1: Worker pid ")


async def test_a_crashed_worker_that_served_restarts_before_the_starts_waiting(
    settings: Settings, iris_model_dir: Path, events: Events
) -> None:
    """Fresh workers (no template): each start takes a turn of the one slot; a crash restart
    of a version that served goes before a new version waiting since earlier."""
    queue = StartQueue(1)
    served = new_set(settings, iris_model_dir, 1, events, queue)
    waiting = new_set(settings, iris_model_dir, 1, events, queue, version="2")
    held, release = asyncio.Event(), asyncio.Event()

    async def another_start() -> None:  # another version's start, holding the one slot
        async with queue.turn(StartPriority.of(Urgency.POINTED_AT, 0)):
            held.set()
            await release.wait()

    served.start()
    holder = None
    try:
        await eventually(lambda: served.state is VersionState.READY, "v1 READY")
        assert events.types() == ["WORKER_STARTING", "VERSION_READY"]
        assert events[0].message == (
            "Worker start began at once; at most 1 start at once "
            "(REGSERVE_WORKER_START_PARALLELISM)."
        )
        holder = asyncio.create_task(another_start())
        await held.wait()
        waiting.start()
        await eventually(lambda: waiting.state is VersionState.PENDING, "v2 waiting")
        assert waiting.summary()[1] == "Waiting for a start slot: 0 ahead."
        os.kill(served.pids()[0], signal.SIGKILL)
        await eventually(lambda: served.state is VersionState.PENDING, "v1's restart waiting")
        assert served.summary()[1] == "Waiting for a start slot: 0 ahead."
        assert waiting.summary()[1] == "Waiting for a start slot: 1 ahead."  # v1 went first
        release.set()
        await eventually(
            lambda: [e.version for e in events if e.event_type == "WORKER_STARTING"][-1:] == ["2"],
            "v2's turn",
        )
        # v1's restart took the slot first; v2's turn came once v1 served again
        order = [(e.event_type, e.version) for e in events if e.event_type]
        assert order[-4:] == [
            ("WORKER_CRASHED", "1"),
            ("WORKER_STARTING", "1"),
            ("WORKER_RESTARTED", "1"),
            ("WORKER_STARTING", "2"),
        ]
        restart = [e for e in events if e.event_type == "WORKER_STARTING"][1]
        assert "after waiting" in restart.message
        assert "(0 ahead)" in restart.message
    finally:
        release.set()
        if holder is not None:
            await holder
        await waiting.stop()
        await served.stop()
