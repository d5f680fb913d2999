"""Traffic splitting through a real ``regserve up``: ``POST /model/{name}/invocations`` draws
its version from the model's traffic config; shadow copies are counted, never returned. The
same server captures requests into the model's inference table (capture tags, sampling, shadow
rows, a write that fails, who may read it back).

Versions 1 and 2 answer "one" and "two" for every row, so each answer's ``X-Model-Version``
is checked against the prediction it carries; version 3 fails to load (never READY) and
version 4 sleeps on every request (a slow shadow must not slow the caller down).
"""

from __future__ import annotations

import json
import math
import stat
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import ok, run_cli
from tests.support.models import (
    iris_frame,
    log_broken_version,
    log_constant_version,
    log_sleepy_version,
)
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "split"
TRAFFIC = "/api/2.0/regserve/endpoints/traffic"
INFERENCE = "/api/2.0/regserve/inference-tables/read"
ROWS = {"dataframe_records": iris_frame()[0].head(1).to_dict(orient="records")}
ANSWERS = {"1": "one", "2": "two"}
SLEEP = 1.5


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegServeProcess, Any]]:
    data = tmp_path_factory.mktemp("traffic") / "data"
    server = RegServeProcess(data, inference_table_flush_seconds="0.2").start()
    try:
        with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
            assert log_constant_version(MODEL, "one") == "1"
            assert log_constant_version(MODEL, "two") == "2"
            assert log_broken_version(MODEL) == "3"
            assert log_sleepy_version(MODEL, SLEEP) == "4"
            reg.stage(MODEL, "1", "Production")
            reg.alias(MODEL, "canary", "2")
            assert server.enable(MODEL).status_code == 200
            for version in ("1", "2", "4"):
                server.wait_version_state(MODEL, version, "VERSION_STATE_READY")
            server.wait_version_state(MODEL, "3", "VERSION_STATE_FAILED")
            yield server, reg
    finally:
        server.close()


def _put(server: RegServeProcess, body: dict[str, Any], token: str = ADMIN_TOKEN) -> httpx.Response:
    return server.client.put(
        TRAFFIC,
        json={"registered_model_name": MODEL, **body},
        headers={"Authorization": f"Bearer {token}"},
    )


def _get(server: RegServeProcess, token: str = ADMIN_TOKEN) -> httpx.Response:
    return server.client.get(
        TRAFFIC,
        params={"registered_model_name": MODEL},
        headers={"Authorization": f"Bearer {token}"},
    )


def _split(server: RegServeProcess, routes: dict[str, int], **extra: Any) -> None:
    body = {"routes": [{"ref": r, "percent": p} for r, p in routes.items()], **extra}
    r = _put(server, body)
    assert r.status_code == 200, r.text


def _score_split(server: RegServeProcess, n: int) -> Counter[str]:
    """Send ``n`` requests to the split URL: how many each version answered (each answer's
    prediction checked against the version its header names)."""

    def one(_: int) -> str:
        r = server.client.post(f"/model/{MODEL}/invocations", json=ROWS)
        assert r.status_code == 200, r.text
        version = r.headers["x-model-version"]
        assert r.json() == {"predictions": [ANSWERS[version]]}, (version, r.text)
        return version

    with ThreadPoolExecutor(4) as pool:
        return Counter(pool.map(one, range(n)))


def _samples(server: RegServeProcess, family: str) -> dict[frozenset[tuple[str, str]], float]:
    text = server.client.get("/metrics").text
    return {
        frozenset(s.labels.items()): s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
        if s.name == f"{family}_total" and s.labels.get("model") == MODEL
    }


def _count(server: RegServeProcess, family: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for k, v in _samples(server, family).items() if wanted <= k)


def _binomial_bounds(n: int, p: float, z: float = 3.29) -> tuple[float, float]:
    """The 99.9% (two-sided, normal approximation) bounds of a Binomial(n, p) count."""
    spread = z * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def test_default_is_production_then_a_90_10_split_lands_within_binomial_bounds(
    served: tuple[RegServeProcess, Any],
) -> None:
    server, _ = served
    r = _get(server)
    assert r.status_code == 200, r.text
    assert r.json()["is_default"] is True
    assert r.json()["effective_routes"] == [
        {"ref": "Production", "percent": 100.0, "endpoint_version_name": "1"}
    ]
    assert _score_split(server, 20) == Counter({"1": 20})

    _split(server, {"1": 90, "canary": 10})
    counts = _score_split(server, 1000)
    low, high = _binomial_bounds(1000, 0.1)
    assert low <= counts["2"] <= high, counts
    assert counts["1"] + counts["2"] == 1000
    # per-route counts in /metrics: route "canary" answered by version 2
    assert _count(server, "regserve_split_requests", route="canary", version="2") == counts["2"]
    assert _count(server, "regserve_split_requests", route="1", version="1") == counts["1"]
    assert _count(server, "regserve_split_requests", route="Production", version="1") == 20
    events = [e for e in server.events(MODEL) if e["event_type"] == "TRAFFIC_CONFIG_UPDATED"]
    assert "1 90%, canary 10%" in events[-1]["message"]


def test_shadow_answers_are_counted_never_returned_and_never_wait(
    served: tuple[RegServeProcess, Any],
) -> None:
    server, _ = served
    _split(server, {"1": 100}, shadow={"ref": "4", "percent": 100})
    before = _count(server, "regserve_shadow_requests", version="4", outcome="200")
    started = time.monotonic()
    for _ in range(3):
        took = time.monotonic()
        r = server.client.post(f"/model/{MODEL}/invocations", json=ROWS)
        assert (r.status_code, r.headers["x-model-version"]) == (200, "1"), r.text
        assert r.json() == {"predictions": ["one"]}
        assert time.monotonic() - took < SLEEP / 2  # the sleepy shadow is not waited for
    assert time.monotonic() - started < SLEEP
    wait_for(
        lambda: (
            _count(server, "regserve_shadow_requests", version="4", outcome="200") >= before + 3
        ),
        30,
        "the three shadow copies to be answered and counted",
    )
    # Only the split URL mirrors: a request with a ref is never copied.
    assert server.score(MODEL, "1", ROWS).status_code == 200
    time.sleep(SLEEP + 0.5)
    assert _count(server, "regserve_shadow_requests", version="4") == before + 3


def test_a_ref_that_is_not_ready_gives_its_share_away_with_one_event(
    served: tuple[RegServeProcess, Any],
) -> None:
    server, _ = served
    _split(server, {"2": 50, "3": 50})  # version 3 FAILED to load
    assert _score_split(server, 40) == Counter({"2": 40})
    effective = _get(server).json()["effective_routes"]
    assert effective == [{"ref": "2", "percent": 100.0, "endpoint_version_name": "2"}]
    unavailable = wait_for(
        lambda: [e for e in server.events(MODEL) if e["event_type"] == "TRAFFIC_REF_UNAVAILABLE"],
        10,
        "the event saying ref 3 takes no traffic",
    )
    assert len(unavailable) == 1, unavailable  # once per change, not per request
    assert (
        "Ref '3' takes no traffic (its 50% goes to the other routes)" in (unavailable[0]["message"])
    )


def test_validation_errors_say_what_to_fix(served: tuple[RegServeProcess, Any]) -> None:
    server, _ = served
    cases = [
        ({"routes": [{"ref": "1", "percent": 90}]}, "add up to 90"),
        ({"routes": [{"ref": "1", "percent": 150}, {"ref": "2", "percent": -50}]}, "0 to 100"),
        ({"routes": [{"ref": " ", "percent": 100}]}, "ref is empty"),
        ({"routes": [{"ref": str(i), "percent": 10} for i in range(11)]}, "at most 10"),
        ({"routes": [{"ref": "1", "percent": 50.5}, {"ref": "2", "percent": 49.5}]}, "percent"),
        ({}, "routes"),
    ]
    for body, says in cases:
        r = _put(server, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
        assert says in r.json()["message"], (body, r.json())
    missing = server.client.put(
        TRAFFIC, json={"registered_model_name": "no-such-model", "routes": []}
    )
    assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert server.client.get(TRAFFIC, params={"registered_model_name": "nope"}).status_code == 404


def test_a_reader_may_read_the_config_but_not_set_it(served: tuple[RegServeProcess, Any]) -> None:
    server, _ = served
    token = _user_token(server, "viewer", "CAN_READ")
    assert _get(server, token).status_code == 200
    refused = _put(server, {"routes": [{"ref": "1", "percent": 100}]}, token)
    assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED")


def test_the_cli_sets_shows_and_resets_the_split(served: tuple[RegServeProcess, Any]) -> None:
    server, _ = served
    ok(run_cli(server.url, "traffic", "set", MODEL, "1=80", "canary=20", "--shadow", "4=5"))
    shown = json.loads(ok(run_cli(server.url, "traffic", "show", MODEL, "-o", "json")))
    assert shown["routes"] == [{"ref": "1", "percent": 80}, {"ref": "canary", "percent": 20}]
    assert shown["shadow"] == {"ref": "4", "percent": 5}
    table = ok(run_cli(server.url, "traffic", "show", MODEL))
    assert "canary" in table
    assert "shadow" in table
    bad = run_cli(server.url, "traffic", "set", MODEL, "1=80")
    assert bad.returncode == 1
    assert "add up to 80" in bad.stderr
    assert run_cli(server.url, "traffic", "set", MODEL, "1=eighty").returncode == 2
    ok(run_cli(server.url, "traffic", "reset", MODEL))
    assert _get(server).json()["is_default"] is True


def _capture(server: RegServeProcess, **tags: str) -> httpx.Response:
    body = {
        "registered_model_name": MODEL,
        "desired_cluster_config": {
            "node_type_id": "local-default",
            "tags": [{"key": f"regserve.{k}", "value": v} for k, v in tags.items()],
        },
    }
    return server.api("PUT", "update-cluster-config", json=body)


def _rows(server: RegServeProcess, token: str = ADMIN_TOKEN, **params: Any) -> httpx.Response:
    return server.client.get(
        INFERENCE,
        params={"registered_model_name": MODEL, "limit": 10000, **params},
        headers={"Authorization": f"Bearer {token}"},
    )


def _rows_of(
    server: RegServeProcess, marker: str, shadows: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Every row, once the row of a request sent with X-Request-Id ``marker`` (after the
    others) is written (the writer keeps the order rows were captured in), and the shadow
    rows of the request ids ``shadows`` (captured when the shadow answers)."""
    r = server.client.post(
        f"/model/{MODEL}/1/invocations", json=ROWS, headers={"X-Request-Id": marker}
    )
    assert r.status_code == 200, r.text

    def written() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = _rows(server).json()["rows"]
        seen = {(row["request_id"], row["shadow"]) for row in rows}
        wanted = {(marker, False), *((rid, True) for rid in shadows)}
        return rows if wanted <= seen else []

    return list(wait_for(written, 30, f"the row of {marker} to be written"))


def test_captured_rows_hold_each_request_its_answer_and_its_shadow_copy(
    served: tuple[RegServeProcess, Any],
) -> None:
    server, _ = served
    uncaptured = server.score(MODEL, "1", ROWS, headers={"X-Request-Id": "capture-off"})
    assert uncaptured.headers["x-request-id"] == "capture-off"  # capture on or not
    refused = _capture(server, inference_table="yes")
    assert (refused.status_code, refused.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "regserve.inference_table must be on or off" in refused.json()["message"]
    assert _capture(server, inference_table="on").status_code == 200
    _split(server, {"1": 100}, shadow={"ref": "2", "percent": 100})
    for n in range(3):
        r = server.client.post(
            f"/model/{MODEL}/invocations", json=ROWS, headers={"X-Request-Id": f"split-{n}"}
        )
        assert (r.status_code, r.headers["x-request-id"]) == (200, f"split-{n}"), r.text
        assert r.json() == {"predictions": ["one"]}  # never the shadow's "two"
    bad = server.client.post(
        f"/model/{MODEL}/canary/invocations",
        content=b"{not json",
        headers={"Content-Type": "application/json", "X-Request-Id": "not sane!"},
    )
    assert bad.status_code == 400
    generated = bad.headers["x-request-id"]
    assert len(generated) == 32  # the caller's id had a space: a new one
    rows = _rows_of(server, "marker-1", ("split-0", "split-1", "split-2"))
    mine = {(row["request_id"], row["shadow"]): row for row in rows}
    for n in range(3):
        row, shadow = mine[(f"split-{n}", False)], mine[(f"split-{n}", True)]
        assert (row["version"], row["ref"], row["route"], row["status_code"]) == (
            "1",
            "*",
            "1",
            200,
        )
        assert (row["caller"], row["content_type"]) == ("admin", "application/json")
        assert json.loads(row["request"]) == ROWS
        assert json.loads(row["response"]) == {"predictions": ["one"]}
        assert row["latency_ms"] > 0
        assert not row["request_truncated"]
        assert not row["response_truncated"]
        assert (shadow["version"], shadow["ref"], shadow["status_code"]) == ("2", "2", 200)
        assert json.loads(shadow["response"]) == {"predictions": ["two"]}
    failed = mine[(generated, False)]
    assert (failed["version"], failed["ref"], failed["status_code"]) == ("2", "canary", 400)
    assert failed["request"] == "{not json"
    assert json.loads(failed["response"])["error_code"] == "BAD_REQUEST"
    assert rows[0]["request_id"] == "marker-1"  # newest first
    assert "capture-off" not in {row["request_id"] for row in rows}
    # callers' data: regserve's alone, out of reach of the models' workers
    tables = server.data_dir / "inference"
    assert stat.S_IMODE(tables.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in tables.rglob("*.parquet")} == {0o600}
    assert len(_rows(server, limit=2).json()["rows"]) == 2


def test_capture_at_a_tenth_keeps_about_a_tenth_of_the_requests(
    served: tuple[RegServeProcess, Any],
) -> None:
    server, _ = served
    _split(server, {"1": 100})
    assert _capture(server, inference_table="on", **{"inference_table.sample": "0.1"}).is_success

    def one(n: int) -> None:
        headers = {"X-Request-Id": f"tenth-{n}"}
        assert server.score(MODEL, "1", ROWS, headers=headers).status_code == 200

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(1000)))
    assert _capture(server, inference_table="on").is_success  # the marker is captured surely
    rows = _rows_of(server, "marker-2")
    kept = sum(row["request_id"].startswith("tenth-") for row in rows)
    low, high = _binomial_bounds(1000, 0.1)
    assert low <= kept <= high, kept


def test_a_table_that_cannot_be_written_fails_no_request(
    served: tuple[RegServeProcess, Any],
) -> None:
    server, _ = served
    table = server.data_dir / "inference" / MODEL
    moved = table.rename(table.with_name("moved-away"))
    table.write_text("a file where the table's folder goes: nothing can be written there")
    try:
        for _ in range(20):
            assert server.score(MODEL, "1", ROWS).status_code == 200
        wait_for(
            lambda: _count(server, "regserve_inference_table_rows", outcome="failed") >= 20,
            30,
            "the rows that could not be written to be counted",
        )
        events = [
            e for e in server.events(MODEL) if e["event_type"] == "INFERENCE_TABLE_WRITE_FAILED"
        ]
        assert len(events) == 1, events  # one report a minute, not one per request
        assert "the requests were answered as usual" in events[0]["message"]
        assert str(server.data_dir) not in events[0]["message"]
    finally:
        table.unlink()
        moved.rename(table)


def test_only_a_manager_reads_the_table_and_bad_parameters_say_what_to_fix(
    served: tuple[RegServeProcess, Any],
) -> None:
    server, _ = served
    refused = _rows(server, _user_token(server, "analyst", "CAN_EDIT"))
    assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert "CAN_MANAGE" in refused.json()["message"]
    missing = server.client.get(INFERENCE, params={"registered_model_name": "no-such-model"})
    assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    for params, says in [({"since": "yesterday"}, "ISO 8601"), ({"limit": 0}, "limit")]:
        bad = _rows(server, **params)
        assert (bad.status_code, bad.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
        assert says in bad.json()["message"], bad.json()
    since = _rows(server, since="2999-01-01").json()
    assert since["rows"] == []
    assert since["sample_rate"] == 1.0


def test_the_cli_prints_the_table_or_writes_it_to_a_file(
    served: tuple[RegServeProcess, Any], tmp_path: Path
) -> None:
    server, _ = served
    table = ok(run_cli(server.url, "inference-table", MODEL, "--limit", "5"))
    assert "marker-2" in table
    path = tmp_path / "rows.parquet"
    ok(run_cli(server.url, "inference-table", MODEL, str(path), "--since", "2000-01-01"))
    frame = pd.read_parquet(path)
    assert {"request_id", "request", "response", "shadow"} <= set(frame.columns)
    assert "marker-2" in set(frame["request_id"])
    _capture(server)  # capture off again: no more rows


def test_the_config_survives_a_restart(served: tuple[RegServeProcess, Any]) -> None:
    server, _ = served
    _split(server, {"1": 30, "canary": 70})
    config = _get(server).json()
    readiness = ("TRAFFIC_REF_UNAVAILABLE", "TRAFFIC_REF_AVAILABLE")
    before = [e for e in server.events(MODEL) if e["event_type"] in readiness]
    server.stop()
    server.start()
    assert _get(server).json()["routes"] == config["routes"]
    wait_for(
        lambda: len(_get(server).json()["effective_routes"]) == 2, 60, "both routes READY again"
    )
    # Routes that wait for their versions to start again are not news: no event.
    assert [e for e in server.events(MODEL) if e["event_type"] in readiness] == before
    counts = _score_split(server, 200)
    low, high = _binomial_bounds(200, 0.7)
    assert low <= counts["2"] <= high, counts


def _user_token(server: RegServeProcess, user: str, level: str) -> str:
    """A new user holding ``level`` on the model, and a token of theirs."""
    admin = server.client
    assert admin.post("/api/2.0/preview/scim/v2/Users", json={"userName": user}).is_success
    acl = [{"user_name": user, "permission_level": level}]
    r = admin.patch(
        f"/api/2.0/permissions/registered-models/{MODEL}", json={"access_control_list": acl}
    )
    assert r.status_code == 200, r.text
    r = admin.post(
        "/api/2.0/token-management/on-behalf-of/tokens",
        json={"application_id": user, "lifetime_seconds": 600},
    )
    return str(r.json()["token_value"])
