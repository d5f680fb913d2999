"""The core story with one test body on both backends, and what only the Ray backend does.

One ``regserve up`` per backend for the whole module (Ray takes ~30 s to start on a small
machine); each test uses its own model. The Ray server starts its own single-node Ray on
127.0.0.1 (``--backend ray`` without an address). Ray is required in CI
(``REGSERVE_TEST_REQUIRE_SERVICES``): when it cannot start, the Ray tests fail there and
skip elsewhere.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from regserve.backends.ray.cluster import RayCluster
from tests.conftest import require_service
from tests.support.hostile import log_hostile_version, report_of
from tests.support.models import log_broken_version
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

BACKENDS = ["local", pytest.param("ray", marks=pytest.mark.ray)]
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
READY = "VERSION_STATE_READY"
FAILED = "VERSION_STATE_FAILED"
IDLE_AFTER = scaled(3.0)
"""The idle timeout of the Ray idle test (tag regserve.idle_timeout)."""
ServerFor = Callable[[str], RegServeProcess]

# What each backend answered to the same bad requests: they must be the same bytes.
_BAD_ANSWERS: dict[str, list[tuple[int, str, bytes]]] = {}


@pytest.fixture(scope="module")
def server_for(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFor]:
    started: dict[str, RegServeProcess] = {}

    def get(backend: str) -> RegServeProcess:
        if backend not in started:
            started[backend] = _start(backend, tmp_path_factory)
        return started[backend]

    yield get
    for backend, server in started.items():
        server.close()  # SIGTERM: a graceful stop, Ray's instance included
        assert server.process is not None
        assert server.process.returncode == 0, f"regserve --backend {backend} did not exit cleanly"
        if backend == "ray":
            session = str(RayCluster(None, server.data_dir.resolve()).temp_dir()).encode()
            left = [p for p in Path("/proc").glob("[0-9]*") if session in _cmdline(p)]
            assert not left, f"processes of regserve's Ray instance outlived it: {left}"


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def _start(backend: str, tmp_path_factory: pytest.TempPathFactory) -> RegServeProcess:
    if backend == "ray" and importlib.util.find_spec("ray.serve") is None:
        require_service("Ray Serve is not installed (pip install 'regserve[ray]')")
    data_dir = tmp_path_factory.mktemp(f"story-{backend}") / "data"
    # Ray starts in the background (versions wait for it); a loaded CI machine needs time.
    return RegServeProcess(data_dir, backend=backend).start(timeout=240)


@pytest.fixture
def registry_of(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], UserRegistry]]:
    """A user's MLflow client pointed at the given regserve (one per test)."""
    entered: list[Any] = []

    def get(url: str) -> UserRegistry:
        context = user_registry(monkeypatch, url, ADMIN_TOKEN)
        entered.append(context)
        return context.__enter__()

    yield get
    for context in reversed(entered):
        context.__exit__(None, None, None)


def _wait_ready(server: RegServeProcess, model: str, version: str) -> None:
    """READY; on Ray, the first version also waits for Ray itself to start."""

    def settled() -> dict[str, Any] | None:
        found = server.versions(model).get(version)
        return found if found and found["state"] in (READY, FAILED) else None

    found = wait_for(settled, 240, f"{model} v{version} to be READY or FAILED")
    _require_ray(found)
    assert found["state"] == READY, found["state_message"]


def _require_ray(version: dict[str, Any]) -> None:
    """Ray could not start here: a skip on a developer's machine, a failure in CI."""
    if "Ray could not be started" in version["state_message"]:
        require_service(version["state_message"])


def _answered_by(server: RegServeProcess, model: str, ref: str) -> str | None:
    r = server.score(model, ref, {"dataframe_records": [ROW]})
    if r.status_code != 200:
        return None
    assert r.content == b'{"predictions":[0]}'
    return str(r.headers["x-model-version"])


def _bad_requests(server: RegServeProcess, model: str) -> list[tuple[int, str, bytes]]:
    url = f"/model/{model}/1/invocations"
    answers = []
    requests = [
        ("application/json", b"{not json"),
        ("text/plain", b"x"),
        ("application/json", b'{"dataframe_records": [{"a": "b"}]}'),
    ]
    for content_type, body in requests:
        r = server.client.post(url, content=body, headers={"Content-Type": content_type})
        answers.append((r.status_code, r.headers["content-type"], r.content))
    return answers


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_core_story_on_each_backend(
    backend: str, server_for: ServerFor, registry_of: Callable[[str], UserRegistry]
) -> None:
    server = server_for(backend)
    registry = registry_of(server.url)
    model = f"story-{backend}"

    # register v1 (Staging, alias champion) -> enable -> READY; score by every kind of ref
    assert registry.register(model) == "1"
    registry.stage(model, "1", "Staging")
    registry.alias(model, "champion", "1")
    assert server.enable(model).json() == {}
    _wait_ready(server, model, "1")
    for ref in ["1", "Staging", "champion", "@champion", "latest"]:
        assert _answered_by(server, model, ref) == "1", ref
    r = server.score(model, "Production", {"dataframe_records": [ROW]})
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")

    # the same bad requests get the same answers, byte for byte, on both backends
    answers = _BAD_ANSWERS[backend] = _bad_requests(server, model)
    assert [status for status, _, _ in answers] == [400, 415, 400]
    if len(_BAD_ANSWERS) == 2:
        assert _BAD_ANSWERS["local"] == _BAD_ANSWERS["ray"]

    # v2 is served without any call; promote it, move the alias
    assert registry.register(model, c=0.5) == "2"
    server.wait_version_state(model, "2", READY, timeout=180)
    assert _answered_by(server, model, "latest") == "2"
    registry.stage(model, "2", "Production")
    wait_for(lambda: _answered_by(server, model, "Production") == "2", 30, "Production -> v2")
    registry.alias(model, "champion", "2")
    wait_for(lambda: _answered_by(server, model, "champion") == "2", 30, "champion -> v2")

    # archive v1: its URL answers 404 with the reason; v2 keeps serving
    registry.stage(model, "1", "Archived")
    wait_for(
        lambda: server.score(model, "1", {"dataframe_records": [ROW]}).status_code == 404,
        60,
        "v1 URL to give 404",
    )
    r = server.score(model, "1", {"dataframe_records": [ROW]})
    assert "archived" in r.json()["message"]
    assert "1" not in server.versions(model)
    assert _answered_by(server, model, "Production") == "2"

    # logs and events come from the backend
    which = {"registered_model_name": model, "endpoint_version_name": "2"}
    logs = server.api("GET", "get-version-logs", params=which)
    assert f"loading model {model}:2" in logs.json()["logs"]
    expected = {"CLUSTER_STARTED", "VERSION_DEPLOYING", "VERSION_READY", "VERSION_REMOVED"}
    # VERSION_REMOVED is recorded once the backend has stopped v1 (after its URL went away)
    wait_for(lambda: expected <= {e["event_type"] for e in server.events(model)}, 60, "events")
    # ... and v1, stopped, left its last log (on Ray: its replicas' Serve logs copied in)
    _assert_kept_log(server, model, "1")

    # disable: the scoring URLs answer 404 and the endpoint is gone (the logs stay)
    assert server.disable(model).json() == {}
    _assert_kept_log(server, model, "2")
    r = server.score(model, "2", {"dataframe_records": [ROW]})
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status = server.api("GET", "get-status", params={"registered_model_name": model})
    assert status.status_code == 400
    assert "CLUSTER_TERMINATED" in {e["event_type"] for e in server.events(model)}


def _assert_kept_log(server: RegServeProcess, model: str, version: str) -> None:
    which = {"registered_model_name": model, "endpoint_version_name": version}
    r = server.api("GET", "get-version-logs", params=which)
    assert r.status_code == 200, r.text
    assert f"loading model {model}:{version}" in r.json()["logs"]


@pytest.mark.ray
def test_an_idle_ray_version_scales_to_zero_and_its_next_request_wakes_it(
    server_for: ServerFor, registry_of: Callable[[str], UserRegistry]
) -> None:
    """regserve.idle_timeout on Ray: Serve scales the version to zero (VERSION_IDLE), it stays
    READY and says it is not loaded, and its next request waits for a replica and gets 200
    (VERSION_WOKEN), as on the local backend (tests/e2e/test_idle.py)."""
    server = server_for("ray")
    registry = registry_of(server.url)
    model = "idle-ray"
    # tagged before its version deploys: no replica restart for a config change
    registry.client.create_registered_model(model)
    assert server.enable(model).status_code == 200
    tags = [{"key": "regserve.idle_timeout", "value": f"{IDLE_AFTER:g}"}]
    config = {"node_type_id": "local-default", "tags": tags}
    body = {"registered_model_name": model, "desired_cluster_config": config}
    r = server.api("PUT", "update-cluster-config", json=body)
    assert r.status_code == 200, r.text
    assert registry.register(model) == "1"
    _wait_ready(server, model, "1")

    wait_for(lambda: _idle_events(server, model) == ["VERSION_IDLE"], 120, "VERSION_IDLE")
    kinds = [e["event_type"] for e in server.events(model)]
    assert kinds.index("VERSION_READY") < kinds.index("VERSION_IDLE")  # loaded first
    version = server.versions(model)["1"]
    assert version["state"] == READY
    assert (version["loaded"], version["idle_reason"]) == (False, "IDLE_TIMEOUT")
    assert version["last_request_timestamp"] is None  # no request yet
    assert "scaled to zero" in version["state_message"]
    assert server.status(model)["state"] == "ENDPOINT_STATE_READY"
    metrics = server.client.get("/metrics").text
    assert re.search(r'regserve_version_unloads_total\{reason="idle_timeout"\} [1-9]', metrics)
    assert f'regserve_version_idle{{model="{model}",version="1"}} 1.0' in metrics

    # no replica runs: the request waits for one (not 503), and the version is loaded again
    sent = time.time()
    # the wait is regserve's (its request timeout, else 504), not the test client's 30 s
    r = server.score(model, "latest", {"dataframe_records": [ROW]}, timeout=scaled(120))
    assert (r.status_code, r.content) == (200, b'{"predictions":[0]}'), r.text
    wait_for(
        lambda: _idle_events(server, model) == ["VERSION_IDLE", "VERSION_WOKEN"],
        60,
        "VERSION_WOKEN",
    )
    version = server.versions(model)["1"]
    assert (version["state"], version["loaded"], version["idle_reason"]) == (READY, True, None)
    assert version["last_request_timestamp"] >= int(sent * 1000)
    woken = next(e for e in server.events(model) if e["event_type"] == "VERSION_WOKEN")
    assert "started version 1 again (1 replica) for a request" in woken["message"]
    server.disable(model)


def _idle_events(server: RegServeProcess, model: str) -> list[str]:
    """VERSION_IDLE and VERSION_WOKEN, oldest first (one of each per idle period)."""
    kinds = {"VERSION_IDLE", "VERSION_WOKEN"}
    return [e["event_type"] for e in server.events(model) if e["event_type"] in kinds]


@pytest.mark.ray
def test_a_ray_replica_sees_no_server_secret(
    server_for: ServerFor, registry_of: Callable[[str], UserRegistry]
) -> None:
    """The environment check of tests/e2e/test_hostile_models.py, on Ray. The file, socket and
    signal checks are not made here: Ray starts replicas in its own worker processes, as the
    user Ray runs as, which regserve cannot change (docs/scale-out.md#what-ray-isolates)."""
    server = server_for("ray")
    registry_of(server.url)
    model = "hostile-ray"
    model_env = server.data_dir / "model-env" / f"{model}.env"
    model_env.write_text("# the model's own credential\nMODEL_API_KEY=for-this-model-only\n")
    log_hostile_version(model, "env")
    server.enable(model)
    _wait_ready(server, model, "1")
    r = server.score(model, "1", {"dataframe_records": [{"target": ""}]})
    assert r.status_code == 200, r.text
    environ = report_of(r.json())["environ"]
    assert environ.get("MODEL_API_KEY") == "for-this-model-only"
    server_names = [k for k in environ if k.startswith(("REGSERVE_", "_MLFLOW_SERVER"))]
    assert server_names == [], sorted(environ)
    assert "MLFLOW_TRACKING_TOKEN" not in environ
    assert not [k for k, v in environ.items() if ADMIN_TOKEN in v]
    logs = server.api(
        "GET",
        "get-version-logs",
        params={"registered_model_name": model, "endpoint_version_name": "1"},
    ).json()["logs"]
    assert "for-this-model-only" not in logs  # the runtime_env is logged with names only
    tags = [{"key": "regserve.network", "value": "none"}]
    body = {
        "registered_model_name": model,
        "desired_cluster_config": {"node_type_id": "local-default", "tags": tags},
    }
    assert server.api("PUT", "update-cluster-config", json=body).status_code == 200

    def refused() -> bool:
        return any("not available with --backend ray" in e["message"] for e in server.events(model))

    wait_for(refused, 120, "the refused network tag")
    server.disable(model)


@pytest.mark.ray
def test_ray_deployment_that_cannot_load_fails_with_its_reason(
    server_for: ServerFor, registry_of: Callable[[str], UserRegistry]
) -> None:
    server = server_for("ray")
    registry = registry_of(server.url)
    model = "broken-ray"
    assert log_broken_version(model) == "1"
    assert registry.register(model) == "2"  # both deploy at once when serving is enabled
    server.enable(model)
    version = server.wait_version_state(model, "1", FAILED, timeout=240)
    _require_ray(version)
    assert "deliberately broken model" in version["state_message"]
    r = server.score(model, "1", {"dataframe_records": [ROW]})
    assert (r.status_code, r.json()["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE")
    assert "deliberately broken model" in r.json()["message"]
    assert "VERSION_FAILED" in {e["event_type"] for e in server.events(model)}
    # the other version is not affected
    _wait_ready(server, model, "2")
    assert _answered_by(server, model, "latest") == "2"
    assert server.status(model)["state"] == "ENDPOINT_STATE_READY"
    server.disable(model)


@pytest.mark.ray
def test_a_follower_gateway_serves_ray_versions(
    server_for: ServerFor, registry_of: Callable[[str], UserRegistry]
) -> None:
    """A second gateway on the same data dir follows the Ray server's routing table: it
    connects to the leader's Ray cluster by itself (the address names it) and serves its
    versions through their deployment handles."""
    leader = server_for("ray")
    registry = registry_of(leader.url)
    model = "followed-ray"
    assert registry.register(model) == "1"
    assert leader.enable(model).status_code == 200
    _wait_ready(leader, model, "1")
    follower = RegServeProcess(leader.data_dir, backend="ray").start(timeout=120)
    try:
        assert follower.health()["role"] == "follower"
        answered = wait_for(
            lambda: _answered_by(follower, model, "1"), 120, "the follower to serve the Ray version"
        )
        assert answered == "1"
        assert _answered_by(follower, model, "latest") == "1"
        log = follower.log_path.read_text(errors="replace")
        assert "connecting to the Ray cluster at " in log
    finally:
        follower.stop(signal.SIGTERM)
        follower.client.close()
    assert follower.process is not None
    assert follower.process.returncode == 0
    assert _answered_by(leader, model, "1") == "1"  # the follower's exit changed nothing
    leader.disable(model)
