"""The control API in Databricks' shapes, against a real regserve and registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.models import log_broken_version
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "control-iris"
JSON_HEADERS = {"Content-Type": "application/json"}
ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegServeProcess, UserRegistry]]:
    server = RegServeProcess(tmp_path_factory.mktemp("control") / "data", max_restarts="2")
    server.start()
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
        reg.register(MODEL)
        reg.register(MODEL, c=0.3)
        reg.stage(MODEL, "2", "Production")
        reg.alias(MODEL, "champion", "1")
        server.enable(MODEL)
        server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        server.wait_version_state(MODEL, "2", "VERSION_STATE_READY")
        yield server, reg
    server.close()


def test_status_list_and_versions_shapes(env: tuple[RegServeProcess, UserRegistry]) -> None:
    server, _ = env
    status = server.status(MODEL)
    assert status["registered_model_name"] == MODEL
    assert status["state"] == "ENDPOINT_STATE_READY"
    assert status["actual_cluster_config"] == {"node_type_id": "local-default", "tags": []}
    listed = server.api("GET", "list").json()["endpoints"]
    assert [e["registered_model_name"] for e in listed] == [MODEL]
    versions = server.api("GET", "list-versions", params={"registered_model_name": MODEL}).json()
    assert [(v["endpoint_version_name"], v["state"]) for v in versions["endpoint_versions"]] == [
        ("1", "VERSION_STATE_READY"),
        ("2", "VERSION_STATE_READY"),
    ]
    assert all(v["registered_model_name"] == MODEL for v in versions["endpoint_versions"])


def test_list_version_aliases(env: tuple[RegServeProcess, UserRegistry]) -> None:
    server, _ = env
    r = server.api("GET", "list-version-aliases", params={"registered_model_name": MODEL})
    aliases = {a["alias"]: a["endpoint_version_name"] for a in r.json()["aliases"]}
    assert aliases == {"Production": "2", "latest": "2", "champion": "1"}


def test_version_logs_and_events(env: tuple[RegServeProcess, UserRegistry]) -> None:
    server, _ = env
    body = {"registered_model_name": MODEL, "endpoint_version_name": "1"}
    logs = server.api("POST", "get-version-logs", json=body).json()["logs"]
    assert "model loaded in" in logs
    r = server.api("POST", "get-version-logs", json={**body, "endpoint_version_name": "9"})
    assert r.status_code == 404
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    events = server.events(MODEL)
    assert all({"timestamp", "event_type", "message"} <= set(e) for e in events)
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    ready = [e for e in events if e["event_type"] == "VERSION_READY"]
    assert {e["endpoint_version_name"] for e in ready} == {"1", "2"}


def test_metric_history_counts_requests(env: tuple[RegServeProcess, UserRegistry]) -> None:
    server, _ = env
    for _ in range(5):
        assert server.score(MODEL, "champion", {"dataframe_records": [ROW]}).status_code == 200
    assert server.score(MODEL, "1", {"dataframe_records": [{"bad": 1}]}).status_code == 400
    r = server.api("GET", "get-metric-history", params={"registered_model_name": MODEL})
    points = r.json()["metrics"]
    requests = sum(
        p["value"]
        for p in points
        if p["key"] == "requests_per_minute" and p["endpoint_version_name"] == "1"
    )
    errors = sum(p["value"] for p in points if p["key"] == "errors_per_minute")
    assert requests >= 6
    assert errors >= 1
    assert any(p["key"] == "latency_p99_ms" and p["value"] > 0 for p in points)
    metrics = server.client.get("/metrics").text
    labels = f'model="{MODEL}",ref="champion",status="200",version="1"'
    assert f"regserve_requests_total{{{labels}}} 5.0" in metrics


def test_cluster_config_and_node_types(env: tuple[RegServeProcess, UserRegistry]) -> None:
    server, _ = env
    node_types = server.client.get("/api/2.0/clusters/list-node-types").json()["node_types"]
    assert node_types[0]["node_type_id"] == "local-default"
    assert node_types[0]["description"].endswith("Cores")
    config = {"node_type_id": "local-default", "tags": [{"key": "team", "value": "fraud"}]}
    body = {"registered_model_name": MODEL, "desired_cluster_config": config}
    r = server.api("PUT", "update-cluster-config", json=body)
    assert r.status_code == 200, r.text
    assert server.status(MODEL)["actual_cluster_config"] == config
    bad = {"registered_model_name": MODEL, "desired_cluster_config": {"node_type_id": "x9.huge"}}
    r = server.api("PUT", "update-cluster-config", json=bad)
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "local-default" in r.json()["message"]
    assert server.status(MODEL)["actual_cluster_config"] == config  # nothing changed


@pytest.mark.parametrize(
    ("method", "route", "kwargs", "status", "code"),
    [
        (
            "GET",
            "get-status",
            {"params": {"registered_model_name": "never"}},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        ("GET", "get-status", {}, 400, "INVALID_PARAMETER_VALUE"),
        (
            "POST",
            "enable",
            {"json": {"registered_model_name": "no-such-model"}},
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        ("POST", "enable", {"json": {}}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "enable", {"content": b"{not json", "headers": JSON_HEADERS}, 400, "BAD_REQUEST"),
        (
            "POST",
            "disable",
            {"json": {"registered_model_name": "never"}},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        ("GET", "no-such-route", {}, 404, "ENDPOINT_NOT_FOUND"),
    ],
)
def test_caller_mistakes_get_clear_4xx(
    env: tuple[RegServeProcess, UserRegistry],
    method: str,
    route: str,
    kwargs: dict[str, object],
    status: int,
    code: str,
) -> None:
    server, _ = env
    r = server.api(method, route, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert r.json()["error_code"] == code
    assert r.json()["message"]


def test_a_json_body_needs_no_content_type_but_scoring_keeps_mlflow_s(
    env: tuple[RegServeProcess, UserRegistry],
) -> None:
    """The README's `curl -d '{...}'` sends application/x-www-form-urlencoded; other clients
    send no Content-Type. Both are read as JSON; what is not JSON is told what to send."""
    server, _ = env
    body = json.dumps({"registered_model_name": MODEL}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # curl -d's default
    for headers in (form, {}, {"Content-Type": "text/plain"}):
        r = server.api("POST", "enable", content=body, headers=headers)
        assert r.status_code == 200, (headers, r.text)
    logs = {"registered_model_name": MODEL, "endpoint_version_name": "1"}
    r = server.api("POST", "get-version-logs", content=json.dumps(logs).encode(), headers=form)
    assert "model loaded in" in r.json()["logs"]
    fields = server.api("POST", "enable", content=f"registered_model_name={MODEL}", headers=form)
    assert fields.status_code == 400
    assert fields.json()["error_code"] == "BAD_REQUEST"
    assert "Content-Type: application/json" in fields.json()["message"]
    csv = server.api("POST", "enable", content=body, headers={"Content-Type": "text/csv"})
    assert csv.status_code == 400
    assert "not Content-Type: text/csv" in csv.json()["message"]
    empty = server.api("POST", "enable")
    assert empty.status_code == 400
    assert "no body" in empty.json()["message"]
    # Scoring keeps MLflow's protocol: no Content-Type is a 415, however JSON the body is.
    rows = json.dumps({"dataframe_records": [ROW]}).encode()
    scored = server.client.post(f"/model/{MODEL}/1/invocations", content=rows, headers=form)
    assert scored.status_code == 415, scored.text
    bare = server.client.post(f"/model/{MODEL}/1/invocations", content=rows)
    assert bare.status_code == 415
    assert bare.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_control_api_needs_the_token(env: tuple[RegServeProcess, UserRegistry]) -> None:
    server, _ = env
    r = httpx.get(f"{server.url}/api/2.0/preview/mlflow/endpoints/list")
    assert r.status_code == 401
    r = httpx.get(f"{server.url}/api/2.0/mlflow/registered-models/search")
    assert r.status_code == 401  # the hosted MLflow registry too


def test_a_version_that_keeps_crashing_fails_alone(
    env: tuple[RegServeProcess, UserRegistry],
) -> None:
    server, reg = env
    broken = log_broken_version(MODEL)
    failed = server.wait_version_state(MODEL, broken, "VERSION_STATE_FAILED", timeout=180)
    assert "crashed 2 times in a row" in failed["state_message"]
    assert "deliberately broken model" in failed["state_message"]  # the log's last lines
    status = server.status(MODEL)
    assert status["state"] == "ENDPOINT_STATE_READY"
    assert f"failed: v{broken}" in status["state_message"]
    r = server.score(MODEL, broken, {"dataframe_records": [ROW]})
    assert r.status_code == 503
    assert "deliberately broken" in r.json()["message"]
    assert server.score(MODEL, "Production", {"dataframe_records": [ROW]}).status_code == 200
    assert (
        server.score(MODEL, "latest", {"dataframe_records": [ROW]}).headers["x-model-version"]
        == "2"
    )
    types = [
        e["event_type"] for e in server.events(MODEL) if e.get("endpoint_version_name") == broken
    ]
    assert types.count("WORKER_CRASHED") == 1
    assert types[-1] == "VERSION_FAILED"
    # archiving it removes it, and the endpoint keeps serving
    reg.stage(MODEL, broken, "Archived")
    wait_for(lambda: broken not in server.versions(MODEL), 30, "the failed version to be removed")


def test_no_active_version_keeps_the_cluster_up(env: tuple[RegServeProcess, UserRegistry]) -> None:
    server, reg = env
    name = "lonely-model"
    version = reg.register(name)
    server.enable(name)
    server.wait_version_state(name, version, "VERSION_STATE_READY")
    reg.stage(name, version, "Archived")
    wait_for(lambda: server.versions(name) == {}, 30, "the archived version to be removed")

    # The endpoint's message follows once the version's workers (and template) have stopped.
    def idle() -> dict[str, Any] | None:
        status = server.status(name)
        return status if "no active version" in status["state_message"] else None

    status = wait_for(idle, 30, "the endpoint to say it has no active version")
    assert status["state"] == "ENDPOINT_STATE_READY"
    assert server.disable(name).status_code == 200


def test_registry_answers_under_the_preview_prefix(
    env: tuple[RegServeProcess, UserRegistry],
) -> None:
    # MLflow 1.x and Databricks-era clients use /api/2.0/preview/mlflow/ for the registry
    server, _ = env
    r = server.client.get("/api/2.0/preview/mlflow/registered-models/get", params={"name": MODEL})
    assert r.status_code == 200
    assert r.json()["registered_model"]["name"] == MODEL
    r = httpx.get(f"{server.url}/api/2.0/preview/mlflow/registered-models/get?name={MODEL}")
    assert r.status_code == 401
