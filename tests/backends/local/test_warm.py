"""The local backend's warm processes, in process, with real workers: a model's later versions
have their template forked from its warm process, which may be killed at any moment without
failing a version, falls back with an event when its libraries are not safe to fork, keeps the
sandbox's environment, is adopted across a restart, and stops with the model's serving."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import mlflow
import pytest

from regserve.backends.base import VersionSpec
from regserve.backends.local.backend import LocalBackend
from regserve.backends.local.paths import WorkerPaths, run_dir_for
from regserve.backends.local.worker_records import WorkerRecord, is_running, read_record
from regserve.settings import Settings
from tests.support.models import save_iris_model
from tests.support.processes import alive
from tests.support.timing import eventually

from .conftest import Events

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = json.dumps({"dataframe_records": [ROW, ROW]}).encode()
THREAD_AT_IMPORT = Path(__file__).resolve().parents[2] / "support" / "thread_at_import.py"


@pytest.fixture
def warm_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"resource_limits": "off", "env_manager": "local"})


@pytest.fixture(scope="module")
def iris_copies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three versions' model directories (each version has its own)."""
    first = save_iris_model(tmp_path_factory.mktemp("iris-versions") / "1")
    copies = [first]
    for version in ("2", "3"):
        copies.append(Path(shutil.copytree(first, first.parent / version)))
    return copies


@pytest.fixture
async def backend(warm_settings: Settings, events: Events) -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(warm_settings, events)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def warm_record(settings: Settings) -> WorkerRecord | None:
    records = sorted(run_dir_for(settings.resolved_data_dir()).glob("*.warm"))
    assert len(records) <= 1, records
    return read_record(records[0]) if records else None


def template_record(settings: Settings, version: str) -> WorkerRecord | None:
    return read_record(
        WorkerPaths.for_template(settings.resolved_data_dir(), "iris", version).pidfile
    )


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


async def deploy_ready(backend: LocalBackend, version: str, model: Path) -> float:
    """Deploy the version and wait until it serves; the seconds that took."""
    started = time.monotonic()
    await backend.deploy(VersionSpec("iris", version, model))
    await eventually(lambda: backend.target("iris", version) is not None, f"v{version} ready")
    return time.monotonic() - started


async def predict(backend: LocalBackend, version: str) -> object:
    target = backend.target("iris", version)
    assert target is not None
    response = await target.request("application/json", BODY, 30)
    assert response.status == 200, response
    return json.loads(response.body)


def started_events(events: Events) -> int:
    return events.types().count("WARM_PROCESS_STARTED")


async def test_later_versions_are_forked_from_the_warm_process(
    backend: LocalBackend,
    warm_settings: Settings,
    events: Events,
    iris_copies: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGSERVE_ADMIN_TOKEN", "warm-secret-token")  # never in a worker
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "warm-secret-token")
    first = await deploy_ready(backend, "1", iris_copies[0])
    await eventually(lambda: started_events(events) == 1, "the warm process started")
    warm = warm_record(warm_settings)
    assert warm is not None
    assert alive(warm.pid)
    second = await deploy_ready(backend, "2", iris_copies[1])
    print(f"\nv1 (warm process starting with it) READY in {first:.2f} s, v2 in {second:.2f} s")
    assert await predict(backend, "2") == {"predictions": [0, 0]}
    template = template_record(warm_settings, "2")
    assert template is not None
    assert template.forked_from == warm.socket  # forked from the warm process...
    assert parent_pid(template.pid) == warm.pid  # ...which is its parent
    assert template.model_path == str(iris_copies[1])
    replica = read_record(
        WorkerPaths.for_version(warm_settings.resolved_data_dir(), "iris", "2").pidfile
    )
    assert replica is not None
    assert replica.forked_from == template.socket
    assert replica.origin == warm.socket  # the command line it runs: adoptable
    assert is_running(replica)
    warm_event = next(e for e in events if e.event_type == "WARM_PROCESS_STARTED")
    assert f"pid {warm.pid}" in warm_event.message
    assert "sklearn" in warm_event.message
    # The sandbox's allow-listed environment: nothing of regserve's.
    environ = environ_of(warm.pid)
    assert b"REGSERVE_" not in environ
    assert b"warm-secret-token" not in environ
    # Its log is its own; the template's lines are in the version's log.
    version_log = WorkerPaths.for_version(warm_settings.resolved_data_dir(), "iris", "2").log
    assert f"template forked from the warm process pid {warm.pid}" in version_log.read_text()

    # No version left in that environment: the warm process is stopped.
    await backend.undeploy("iris", "1")
    assert alive(warm.pid)
    await backend.undeploy("iris", "2")
    assert not alive(warm.pid)
    assert warm_record(warm_settings) is None


async def test_a_warm_process_started_before_the_first_version_is_the_one_it_forks_from(
    backend: LocalBackend,
    warm_settings: Settings,
    iris_copies: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``prewarm`` (the demo, while it registers): the model's first version finds its warm
    process started, in the model's sandbox, and its template is forked from it."""
    monkeypatch.setenv("REGSERVE_ADMIN_TOKEN", "warm-secret-token")  # never in a worker
    flavors = {"python_function": {"loader_module": "mlflow.sklearn"}, "sklearn": {}}
    await backend.prewarm("iris", flavors)
    await eventually(lambda: warm_record(warm_settings), "the warm process, before any version")
    warm = warm_record(warm_settings)
    assert warm is not None
    assert alive(warm.pid)
    assert b"warm-secret-token" not in environ_of(warm.pid)
    await deploy_ready(backend, "1", iris_copies[0])
    assert warm_record(warm_settings) == warm  # the same process, not a second one
    template = template_record(warm_settings, "1")
    assert template is not None
    assert template.forked_from == warm.socket
    assert parent_pid(template.pid) == warm.pid
    assert await predict(backend, "1") == {"predictions": [0, 0]}


async def test_a_warm_process_killed_at_any_moment_costs_at_most_a_cold_start(
    backend: LocalBackend, warm_settings: Settings, events: Events, iris_copies: list[Path]
) -> None:
    await deploy_ready(backend, "1", iris_copies[0])
    await eventually(lambda: started_events(events) == 1, "the warm process started")
    warm = warm_record(warm_settings)
    assert warm is not None
    # Killed just before a version starts: the version's template starts cold, or waits for
    # the warm process started again.
    os.kill(warm.pid, signal.SIGKILL)
    await deploy_ready(backend, "2", iris_copies[1])
    assert await predict(backend, "2") == {"predictions": [0, 0]}
    await eventually(lambda: started_events(events) == 2, "the warm process started again")
    again = warm_record(warm_settings)
    assert again is not None
    assert again.pid != warm.pid
    # Killed right after it forked the version's template, which is loading its model: the
    # template, in its own session, goes on.
    await backend.deploy(VersionSpec("iris", "3", iris_copies[2]))
    await eventually(lambda: template_record(warm_settings, "3") is not None, "v3's template")
    os.kill(again.pid, signal.SIGKILL)
    await eventually(lambda: backend.target("iris", "3") is not None, "v3 ready")
    assert await predict(backend, "3") == {"predictions": [0, 0]}
    template = template_record(warm_settings, "3")
    assert template is not None
    assert template.forked_from == again.socket  # forked from the one killed
    assert alive(template.pid)
    assert {"VERSION_FAILED", "WARM_PROCESS_DISABLED"}.isdisjoint(events.types())
    crashed = warm.pid, again.pid
    assert not any(alive(pid) for pid in crashed)


def save_thread_at_import_model(path: Path) -> Path:
    """A pyfunc whose loader module (the flavor's library) starts a thread when imported."""
    data = path.parent / "data.txt"
    data.write_text("rows")
    mlflow.pyfunc.save_model(
        str(path), loader_module="thread_at_import", data_path=str(data), pip_requirements=[]
    )
    return path


async def test_a_library_that_starts_a_thread_at_import_falls_back_with_an_event(
    backend: LocalBackend, warm_settings: Settings, events: Events, tmp_path: Path
) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    shutil.copy(THREAD_AT_IMPORT, library)  # on the environment's path, as a library is
    model = save_thread_at_import_model(tmp_path / "model")
    spec = VersionSpec("iris", "1", model, Path(sys.executable), library)
    await backend.deploy(spec)
    await eventually(lambda: backend.target("iris", "1") is not None, "v1 ready (fresh workers)")
    target = backend.target("iris", "1")
    assert target is not None
    response = await target.request("application/json", BODY, 30)
    assert json.loads(response.body) == {"predictions": [2, 2]}
    types = events.types()
    assert "WARM_PROCESS_DISABLED" in types
    assert "WARM_PROCESS_STARTED" not in types
    disabled = next(e for e in events if e.event_type == "WARM_PROCESS_DISABLED")
    assert "not safe to fork once imported" in disabled.message
    assert disabled.version == "1"
    assert "TEMPLATE_DISABLED" in types  # the model itself imports it too: fresh workers
    warm_log = next((warm_settings.resolved_data_dir() / "logs" / "iris").glob("warm-*.log"))
    assert "library-poller" in warm_log.read_text()


async def test_a_restarted_backend_adopts_the_warm_process(
    warm_settings: Settings, events: Events, iris_copies: list[Path]
) -> None:
    first = LocalBackend(warm_settings, events)
    await first.start()
    try:
        await deploy_ready(first, "1", iris_copies[0])
        await eventually(lambda: started_events(events) == 1, "the warm process started")
        warm = warm_record(warm_settings)
        assert warm is not None
    finally:
        await first.close(keep_workers=True)
    assert alive(warm.pid)
    second = LocalBackend(warm_settings, events)
    await second.start()
    try:
        assert await second.adopt("iris", "1", iris_copies[0]) is not None
        await deploy_ready(second, "2", iris_copies[1])
        adopted = warm_record(warm_settings)
        assert adopted is not None
        assert adopted.pid == warm.pid
        assert started_events(events) == 1  # adopted quietly: no new event
        template = template_record(warm_settings, "2")
        assert template is not None
        assert parent_pid(template.pid) == warm.pid
        assert await predict(second, "2") == {"predictions": [0, 0]}
    finally:
        await second.close()
    assert not alive(warm.pid)


async def test_warm_start_off_starts_templates_cold(
    warm_settings: Settings,
    events: Events,
    iris_copies: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGSERVE_WARM_START", "0")
    assert Settings().warm_start is False
    cold = warm_settings.model_copy(update={"warm_start": False})
    backend = LocalBackend(cold, events)
    await backend.start()
    try:
        await backend.prewarm("iris", {"sklearn": {}})  # nothing either
        await deploy_ready(backend, "1", iris_copies[0])
        template = template_record(cold, "1")
        assert template is not None
        assert template.forked_from is None  # started as itself
        assert warm_record(cold) is None
        assert "WARM_PROCESS_STARTED" not in events.types()
    finally:
        await backend.close()
