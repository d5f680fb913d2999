"""Scoring through the real gateway: MLflow's protocol case by case, and regserve's own rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conformance_cases import CASES, Case
from tests.support.conformance import Answer, assert_conformant
from tests.support.mlflow_serve import mlflow_models_serve
from tests.support.models import log_sleepy_version, log_slow_loading_version
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "conformance-iris"
SLEEPY = "sleepy"
SLOW = "slow-start"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


class Served:
    def __init__(self, server: RegServeProcess, registry: UserRegistry) -> None:
        self.server = server
        self.registry = registry


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("gateway") / "data"
    server = RegServeProcess(data, request_timeout="3").start()
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
        reg.register(MODEL)
        reg.stage(MODEL, "1", "Production")
        log_sleepy_version(SLEEPY, 6.0)
        assert server.enable(MODEL).status_code == 200
        assert server.enable(SLEEPY).status_code == 200
        server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        server.wait_version_state(SLEEPY, "1", "VERSION_STATE_READY")
        yield Served(server, reg)
    server.close()


@pytest.fixture(scope="module")
def mlflow_server(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model_dir = served.server.model_dir(MODEL, "1")  # what regserve serves
    with mlflow_models_serve(model_dir, tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def _post(url: str, case: Case, headers: dict[str, str] | None = None) -> Answer:
    all_headers = dict(headers or {})
    if case.content_type is not None:
        all_headers["Content-Type"] = case.content_type
    return Answer.from_httpx(httpx.post(url, content=case.body, headers=all_headers, timeout=60))


@pytest.mark.parametrize("case", CASES, ids=[case.case_id for case in CASES])
def test_gateway_answers_like_mlflow(case: Case, served: Served, mlflow_server: str) -> None:
    theirs = _post(mlflow_server + "/invocations", case)
    url = f"{served.server.url}/model/{MODEL}/Production/invocations"
    ours = _post(url, case, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert_conformant(case, ours, theirs)


def test_bad_input_never_kills_a_worker_nor_changes_what_is_served(served: Served) -> None:
    server = served.server
    before = _lasting(server.versions(MODEL))
    garbage = [
        (None, b""),
        ("application/json", b"\xff\xfe\x00garbage"),
        ("application/json", b"[" * 100_000),
        ("text/csv", b"\x00\x01\x02"),
        ("application/vnd.apache.parquet", b"PAR1" + b"\x00" * 64),
        ("application/json", json.dumps({"dataframe_records": [{"x": "y"}] * 5000}).encode()),
        ("application/json", b'{"inputs": ' + b"1e999999" + b"}"),
        ("multipart/form-data; boundary=x", b"--x--"),
    ]
    for content_type, body in garbage:
        headers = {"Content-Type": content_type} if content_type else {}
        r = server.client.post(f"/model/{MODEL}/1/invocations", content=body, headers=headers)
        assert 400 <= r.status_code < 500, (content_type, body[:40], r.status_code, r.text[:300])
        assert r.json()["error_code"], r.text
    assert _lasting(server.versions(MODEL)) == before  # same workers (pids), same states
    assert server.score(MODEL, "1", {"dataframe_records": [ROW]}).json() == {"predictions": [0]}


def test_databricks_python_snippet_double_encoded_json(served: Served) -> None:
    # Databricks' documented snippet: requests.request(..., json=json.dumps(data_dict))
    data_dict = {"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())]}}
    r = served.server.client.post(
        f"/model/{MODEL}/Production/invocations", json=json.dumps(data_dict)
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [0]}


def test_payload_over_the_limit_is_413_with_or_without_content_length(served: Served) -> None:
    big = b'{"inputs": [' + b"1.0," * (17 * 1024 * 1024 // 4) + b"1.0]}"
    url = f"/model/{MODEL}/1/invocations"
    r = served.server.client.post(url, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error_code"] == "REQUEST_TOO_LARGE"
    assert "16 MiB" in r.json()["message"]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 1 << 20):
            yield big[i : i + (1 << 20)]

    r = served.server.client.post(
        url, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["error_code"] == "REQUEST_TOO_LARGE"


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/model/no-such-model/1/invocations", "is not served"),
        (f"/model/{MODEL}/7/invocations", "Version 7"),
        (f"/model/{MODEL}/Staging/invocations", "no served version in stage Staging"),
        (f"/model/{MODEL}/nosuchalias/invocations", "no version, stage or alias"),
    ],
)
def test_unknown_targets_are_404(served: Served, path: str, fragment: str) -> None:
    r = served.server.client.post(path, json={"dataframe_records": [ROW]})
    assert r.status_code == 404
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert fragment in r.json()["message"]


def test_get_on_a_scoring_url_is_405(served: Served) -> None:
    r = served.server.client.get(f"/model/{MODEL}/1/invocations")
    assert r.status_code == 405
    assert r.json()["error_code"] == "METHOD_NOT_ALLOWED"


def test_credentials(served: Served) -> None:
    url = f"{served.server.url}/model/{MODEL}/1/invocations"
    body = {"dataframe_records": [ROW]}
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Token abc"}]:
        r = httpx.post(url, json=body, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error_code"] == "UNAUTHENTICATED"
    r = httpx.post(url, json=body, auth=("token", ADMIN_TOKEN))
    assert r.status_code == 200
    assert r.json() == {"predictions": [0]}
    assert httpx.get(f"{served.server.url}/health").status_code == 200  # no auth


def test_a_request_over_the_timeout_is_504_and_the_worker_lives_on(served: Served) -> None:
    server = served.server
    pid = server.versions(SLEEPY)["1"]["worker_pid"]
    r = server.score(SLEEPY, "1", {"dataframe_records": [ROW]})
    assert r.status_code == 504
    assert r.json()["error_code"] == "DEADLINE_EXCEEDED"
    assert "3 s" in r.json()["message"]
    assert server.versions(SLEEPY)["1"]["worker_pid"] == pid
    assert server.versions(SLEEPY)["1"]["state"] == "VERSION_STATE_READY"


def test_a_version_still_starting_is_503_with_retry_after(served: Served) -> None:
    """A request waits for a starting version up to its deadline (3 s here), then gets 503 with
    Retry-After; a version that loads for 8 s is still starting then (a warm start forks its
    template at once, but the load is the model's own)."""
    server = served.server
    version = log_slow_loading_version(SLOW, 8.0)
    assert server.enable(SLOW).status_code == 200

    def starting() -> bool:
        v = server.versions(SLOW).get(version)
        return v is not None and v["state"] != "VERSION_STATE_READY"

    wait_for(starting, 30, f"v{version} to be deploying")
    r = server.score(SLOW, version, {"dataframe_records": [ROW]})
    assert r.status_code == 503, r.text
    assert r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert int(r.headers["retry-after"]) >= 1
    server.wait_version_state(SLOW, version, "VERSION_STATE_READY")
    assert server.score(SLOW, version, {"dataframe_records": [ROW]}).status_code == 200


def _lasting(versions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """list-versions without the time of the last request (every request moves it)."""
    return {
        v: {k: x for k, x in fields.items() if k != "last_request_timestamp"}
        for v, fields in versions.items()
    }
