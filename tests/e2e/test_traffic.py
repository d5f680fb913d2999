"""Traffic splitting through a real ``regserve up``: ``POST /model/{name}/invocations`` draws
its version from the model's traffic config; shadow copies are counted, never returned.

Versions 1 and 2 answer "one" and "two" for every row, so each answer's ``X-Model-Version``
is checked against the prediction it carries; version 3 fails to load (never READY) and
version 4 sleeps on every request (a slow shadow must not slow the caller down).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
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
ROWS = {"dataframe_records": iris_frame()[0].head(1).to_dict(orient="records")}
ANSWERS = {"1": "one", "2": "two"}
SLEEP = 1.5


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegServeProcess, Any]]:
    server = RegServeProcess(tmp_path_factory.mktemp("traffic") / "data").start()
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
    admin = server.client
    assert admin.post("/api/2.0/preview/scim/v2/Users", json={"userName": "viewer"}).is_success
    acl = [{"user_name": "viewer", "permission_level": "CAN_READ"}]
    r = admin.patch(
        f"/api/2.0/permissions/registered-models/{MODEL}", json={"access_control_list": acl}
    )
    assert r.status_code == 200, r.text
    r = admin.post(
        "/api/2.0/token-management/on-behalf-of/tokens",
        json={"application_id": "viewer", "lifetime_seconds": 600},
    )
    token = r.json()["token_value"]
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
