"""``/metrics`` after real traffic through a real ``regserve up``, parsed as Prometheus does."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.models import iris_frame
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "metered"
ROWS = {"dataframe_records": iris_frame()[0].head(2).to_dict(orient="records")}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegServeProcess, Any]]:
    server = RegServeProcess(tmp_path_factory.mktemp("metrics") / "data").start()
    try:
        with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
            reg.client.create_registered_model(MODEL)
            assert server.enable(MODEL).status_code == 200
            version = reg.register(MODEL)
            reg.alias(MODEL, "champion", version)
            server.wait_version_state(MODEL, version, "VERSION_STATE_READY")
            yield server, reg
    finally:
        server.close()


def _samples(server: RegServeProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = server.client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_the_traffic_sent(served: tuple[RegServeProcess, UserRegistry]) -> None:
    server, _ = served
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.score(MODEL, "1", ROWS).status_code, range(40)))
    assert answers == [200] * 40
    for _ in range(5):
        assert server.score(MODEL, "@champion", ROWS).status_code == 200
    for _ in range(3):
        assert server.score(MODEL, "CHAMPION", ROWS).status_code == 404  # alias names are exact
    for _ in range(2):
        assert server.score(MODEL, "1", {"nonsense": 1}).status_code == 400
    assert httpx.post(f"{server.url}/model/{MODEL}/1/invocations", json=ROWS).status_code == 401

    s = _samples(server)
    req = "regserve_requests_total"
    assert _value(s, req, model=MODEL, version="1", ref="1", status="200") == 40
    assert _value(s, req, model=MODEL, version="1", ref="champion", status="200") == 5
    assert _value(s, req, model=MODEL, version="1", ref="1", status="400") == 2
    assert _value(s, req, model=MODEL, version="-", ref="-", status="404") == 3
    assert not any(name == req and ("status", "401") in labels for name, labels in s)
    latency = "regserve_request_latency_seconds_count"
    assert _value(s, latency, model=MODEL, version="1") == 47
    # Every request that reached the worker went through exactly one batch.
    assert _value(s, "regserve_batch_size_sum", model=MODEL, version="1") == 47
    batches = _value(s, "regserve_batch_size_count", model=MODEL, version="1")
    assert 1 <= batches <= 47
    assert _value(s, "regserve_batch_size_bucket", model=MODEL, version="1", le="+Inf") == batches
    assert _value(s, "regserve_queue_depth", model=MODEL, version="1") == 0
    assert _value(s, "regserve_worker_up", model=MODEL, version="1") == 1
    # Registered while regserve ran: its time from registration to READY was observed.
    assert _value(s, "regserve_version_ready_seconds_count") == 1
    assert 0 < _value(s, "regserve_version_ready_seconds_sum") < 120
    assert _value(s, "regserve_registry_syncs_total", outcome="ok") >= 1
    assert _value(s, "regserve_registry_sync_age_seconds") < 10  # polled every second


def test_a_killed_worker_counts_as_a_crash_and_a_restart(
    served: tuple[RegServeProcess, UserRegistry],
) -> None:
    server, _ = served
    pid = server.versions(MODEL)["1"]["worker_pid"]
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        s = _samples(server)
        return _value(s, "regserve_worker_restarts_total", model=MODEL, version="1") == 1

    wait_for(restarted, 60, "the restart to be counted")
    s = _samples(server)
    assert _value(s, "regserve_worker_crashes_total", model=MODEL, version="1") == 1
    assert server.score(MODEL, "1", ROWS).status_code == 200
