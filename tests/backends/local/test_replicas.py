"""A version's ReplicaSet in process, with real worker processes: start, a replica killed and
restarted while the other serves, a version that cannot load, stop."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from regserve.backends.base import VersionSpec
from regserve.backends.local.replicas import ReplicaSet
from regserve.errors import UnavailableError
from regserve.sandbox import Isolation
from regserve.settings import Settings
from regserve.states import VersionState
from tests.support.processes import alive
from tests.support.timing import eventually

from .conftest import Events

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = json.dumps({"dataframe_records": [ROW]}).encode()


def new_set(settings: Settings, model: Path, count: int, events: Events) -> ReplicaSet:
    sandbox = Isolation(settings, settings.resolved_data_dir()).sandbox_for("iris")
    return ReplicaSet(
        settings, VersionSpec("iris", "1", model), count, 0, list, events, sandbox=sandbox
    )


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
