"""Idle versions, in process, with real workers: a version with no request for its idle timeout
has its replicas and template stopped (the warm process stays), stays READY and the backend's
target, and its next requests (one wake for many) start it again, forked from the warm
process, and are answered; ``never`` keeps it loaded; a version that cannot load again is
FAILED with the reason, and its waiting requests are refused at once, not left hanging."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from regserve.backends.base import VersionSpec
from regserve.backends.local.backend import LocalBackend
from regserve.backends.local.paths import WorkerPaths, run_dir_for
from regserve.backends.local.replicas import ReplicaSet
from regserve.backends.local.worker_records import read_record
from regserve.errors import UnavailableError
from regserve.settings import Settings
from regserve.states import VersionState
from regserve.store import ClusterConfig
from tests.support.models import save_iris_model
from tests.support.processes import alive
from tests.support.timing import eventually, scaled

from .conftest import Events

ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
BODY = json.dumps({"dataframe_records": [ROW]}).encode()
IDLE_AFTER = scaled(2.0)


@pytest.fixture
def idle_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"resource_limits": "off", "env_manager": "local", "max_restarts": 2}
    )


@pytest.fixture
async def backend(idle_settings: Settings, events: Events) -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(idle_settings, events)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A version's own model directory (the failure test breaks it)."""
    return save_iris_model(tmp_path / "iris")


async def serve(backend: LocalBackend, model: Path, idle_timeout: str) -> ReplicaSet:
    tags = (("regserve.idle_timeout", idle_timeout),)
    await backend.start_cluster("iris", ClusterConfig("local-default", tags))
    await backend.deploy(VersionSpec("iris", "1", model))
    await eventually(lambda: backend.target("iris", "1") is not None, "v1 ready")
    target = backend.target("iris", "1")
    assert isinstance(target, ReplicaSet)
    return target


def worker_pids(settings: Settings, replicas: ReplicaSet) -> list[int]:
    """The version's replicas and template (from their records)."""
    template = WorkerPaths.for_template(settings.resolved_data_dir(), "iris", "1").pidfile
    records = [read_record(template), *(read_record(r.paths.pidfile) for r in replicas.replicas)]
    return [r.pid for r in records if r is not None]


def warm_pid(settings: Settings) -> int:
    (record,) = sorted(run_dir_for(settings.resolved_data_dir()).glob("*.warm"))
    warm = read_record(record)
    assert warm is not None
    return warm.pid


async def predict(replicas: ReplicaSet) -> object:
    response = await replicas.request("application/json", BODY, scaled(60))
    assert response.status == 200, response
    return json.loads(response.body)


async def test_an_idle_version_stops_its_workers_and_wakes_for_its_next_request(
    backend: LocalBackend, idle_settings: Settings, events: Events, model: Path
) -> None:
    replicas = await serve(backend, model, f"{IDLE_AFTER:g}")
    assert await predict(replicas) == {"predictions": [2]}
    loaded = worker_pids(idle_settings, replicas)
    assert len(loaded) == 2  # the replica and its template
    warm = warm_pid(idle_settings)

    await eventually(lambda: "VERSION_IDLE" in events.types(), "idle", timeout=30)
    assert not any(alive(pid) for pid in loaded)
    assert worker_pids(idle_settings, replicas) == []
    assert backend.worker_pid("iris", "1") is None
    assert alive(warm)  # kept: waking only loads the model
    assert backend.target("iris", "1") is replicas  # still routed
    assert replicas.summary() == (VersionState.READY, "Idle, loaded on the next request.")
    idle = next(e for e in events if e.event_type == "VERSION_IDLE")
    assert idle.state is VersionState.READY
    assert idle.worker_pid is None
    assert f"unloaded after {IDLE_AFTER:.0f} s without a request" in idle.message

    started = time.monotonic()
    assert await predict(replicas) == {"predictions": [2]}
    took = time.monotonic() - started
    print(f"\nfirst request to the idle version answered in {took:.2f} s")
    woken = next(e for e in events if e.event_type == "VERSION_WOKEN")
    assert woken.state is VersionState.READY
    assert "loaded again for a request; took" in woken.message
    first_ready = events.types().index("VERSION_READY")
    after = events[[i for i, e in enumerate(events) if e.event_type][first_ready] :]
    assert {e.state for e in after} == {VersionState.READY}  # READY throughout, idle or waking
    awake = worker_pids(idle_settings, replicas)
    assert len(awake) == 2
    assert not set(awake) & set(loaded)
    template = read_record(
        WorkerPaths.for_template(idle_settings.resolved_data_dir(), "iris", "1").pidfile
    )
    assert template is not None
    assert template.forked_from is not None  # forked from the warm process, not cold
    assert warm_pid(idle_settings) == warm

    # Requests keep it awake; once they stop, it idles again.
    for _ in range(3):
        await asyncio.sleep(IDLE_AFTER / 2)
        assert await predict(replicas) == {"predictions": [2]}
    assert events.types().count("VERSION_IDLE") == 1
    await eventually(lambda: events.types().count("VERSION_IDLE") == 2, "idle again", 30)


async def test_concurrent_requests_to_an_idle_version_share_one_wake(
    backend: LocalBackend, idle_settings: Settings, events: Events, model: Path
) -> None:
    replicas = await serve(backend, model, f"{IDLE_AFTER:g}")
    await eventually(lambda: "VERSION_IDLE" in events.types(), "idle", timeout=30)
    answers = await asyncio.gather(*(predict(replicas) for _ in range(20)))
    assert answers == [{"predictions": [2]}] * 20
    assert events.types().count("VERSION_WOKEN") == 1
    assert events.types().count("WORKER_STARTING") == 2  # the first start, and one wake
    assert len(worker_pids(idle_settings, replicas)) == 2


async def test_never_keeps_a_version_loaded(
    backend: LocalBackend, idle_settings: Settings, events: Events, model: Path
) -> None:
    replicas = await serve(backend, model, "never")
    pids = worker_pids(idle_settings, replicas)
    await asyncio.sleep(IDLE_AFTER * 2)
    assert "VERSION_IDLE" not in events.types()
    assert worker_pids(idle_settings, replicas) == pids
    assert all(alive(pid) for pid in pids)


async def test_a_version_that_cannot_load_again_fails_with_the_reason(
    backend: LocalBackend, events: Events, model: Path
) -> None:
    replicas = await serve(backend, model, f"{IDLE_AFTER:g}")
    await eventually(lambda: "VERSION_IDLE" in events.types(), "idle", timeout=30)
    shutil.rmtree(model)  # e.g. its files were removed meanwhile
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="failed to load again after being idle") as error:
        await replicas.request("application/json", BODY, scaled(120))
    assert error.value.retry_after == 30  # not worth waiting for: answered at once
    assert time.monotonic() - started < scaled(90)
    state, message = replicas.summary()
    assert state is VersionState.FAILED
    assert "exited with code 3 (the model could not be loaded)" in message
    assert events[-1].event_type == "VERSION_FAILED"
    assert events[-1].state is VersionState.FAILED
    assert backend.target("iris", "1") is None


async def test_a_version_removed_while_it_wakes_lets_its_waiting_requests_go(
    backend: LocalBackend, idle_settings: Settings, events: Events, model: Path
) -> None:
    replicas = await serve(backend, model, f"{IDLE_AFTER:g}")
    await eventually(lambda: "VERSION_IDLE" in events.types(), "idle", timeout=30)
    waiting = asyncio.create_task(replicas.request("application/json", BODY, scaled(60)))
    await asyncio.sleep(0.05)  # it began the wake and waits for it
    started = time.monotonic()
    await backend.undeploy("iris", "1")
    with pytest.raises(UnavailableError, match="retry shortly") as error:
        await waiting
    assert error.value.retry_after == 2  # the gateway resolves the ref again
    assert time.monotonic() - started < scaled(15)  # not REGSERVE_UNAVAILABLE_WAIT (60 s)
    assert worker_pids(idle_settings, replicas) == []
