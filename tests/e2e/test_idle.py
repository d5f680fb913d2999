"""Idle versions against a real ``regserve up`` (REGSERVE_IDLE_TIMEOUT=2, scaled): a version nobody
calls has its workers stopped but stays READY in list-versions, its URLs and events say what
happened, ``/metrics`` counts it idle, and its next requests (several at once) are answered
200 by one wake, not 503.

The same server has a memory budget far too small for anything (1 MiB) and a grace of 5 s
(scaled) that the idle timeout always beats: a model tagged ``regserve.idle_timeout=never``
has its versions unloaded for the budget instead, least recently used first, and each wakes
for its next request and stays loaded for the grace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.cli import ok, run_cli
from tests.support.processes import alive
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

MODEL = "sleepy"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = {"dataframe_records": [ROW]}
IDLE_AFTER = scaled(2.0)
GRACE = scaled(5.0)
KEPT = "kept"
"""A model that never idles: only the memory budget unloads its versions."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    server = RegServeProcess(
        tmp_path_factory.mktemp("idle") / "data",
        idle_timeout=f"{IDLE_AFTER:g}",
        memory_budget="1MiB",
        memory_budget_grace=f"{GRACE:g}",
    ).start()
    try:
        with (
            pytest.MonkeyPatch.context() as patch,
            user_registry(patch, server.url, ADMIN_TOKEN) as registry,
        ):
            assert registry.register(MODEL) == "1"
        assert server.enable(MODEL).status_code == 200
        server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        yield server
    finally:
        server.close()


def event_count(server: RegServeProcess, kind: str) -> int:
    return sum(e["event_type"] == kind for e in server.events(MODEL))


def idle_metric(server: RegServeProcess) -> str:
    text = server.client.get("/metrics").text
    return next(
        (line for line in text.splitlines() if line.startswith("regserve_version_idle{")), ""
    )


def test_an_idle_version_stays_ready_and_answers_its_next_requests(
    server: RegServeProcess,
) -> None:
    first = server.score(MODEL, "latest", BODY)
    assert first.status_code == 200, first.text
    pid = server.versions(MODEL)["1"]["worker_pid"]
    assert alive(pid)

    wait_for(lambda: event_count(server, "VERSION_IDLE") == 1, 60, "VERSION_IDLE")
    version = server.versions(MODEL)["1"]
    assert version["state"] == "VERSION_STATE_READY"
    assert version["state_message"] == "Idle, loaded on the next request."
    assert version.get("worker_pid") is None
    assert not alive(pid)
    assert server.status(MODEL)["state"] == "ENDPOINT_STATE_READY"
    assert idle_metric(server).endswith(" 1.0")
    idle = next(e for e in server.events(MODEL) if e["event_type"] == "VERSION_IDLE")
    assert f"unloaded after {IDLE_AFTER:.0f} s without a request" in idle["message"]
    table = ok(run_cli(server.url, "versions", MODEL))
    row_1 = next(line for line in table.splitlines() if "│ 1 " in line)
    assert "idle (idle timeout)" in row_1, table

    answer = server.score(MODEL, "latest", BODY)  # a stage, alias or latest URL wakes it too
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [0]}
    assert answer.headers["X-Model-Version"] == "1"
    woken = next(e for e in server.events(MODEL) if e["event_type"] == "VERSION_WOKEN")
    assert "loaded again for a request; took" in woken["message"]
    version = server.versions(MODEL)["1"]
    assert version["state"] == "VERSION_STATE_READY"
    assert alive(version["worker_pid"])
    assert idle_metric(server).endswith(" 0.0")

    # Idle again; then twelve requests at once: all answered, by one wake.
    wait_for(lambda: event_count(server, "VERSION_IDLE") == 2, 60, "idle again")
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: server.score(MODEL, "1", BODY), range(12)))
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
    assert event_count(server, "VERSION_WOKEN") == 2


def test_the_memory_budget_unloads_the_least_recently_used_version_first(
    server: RegServeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    with user_registry(monkeypatch, server.url, ADMIN_TOKEN) as registry:
        registry.client.create_registered_model(KEPT)
        assert server.enable(KEPT).status_code == 200
        tags = [{"key": "regserve.idle_timeout", "value": "never"}]
        desired = {"node_type_id": "local-default", "tags": tags}
        config = {"registered_model_name": KEPT, "desired_cluster_config": desired}
        assert server.api("PUT", "update-cluster-config", json=config).status_code == 200
        for version in ("1", "2", "3"):
            assert registry.register(KEPT) == version
    for version in ("1", "2", "3"):
        server.wait_version_state(KEPT, version, "VERSION_STATE_READY")

    def evicted() -> list[str]:
        """The versions unloaded for the budget, oldest first."""
        events = [e for e in server.events(KEPT) if e["event_type"] == "VERSION_EVICTED"]
        return [e["endpoint_version_name"] for e in events]  # get-event-history: oldest first

    # Nothing fits: each is unloaded once its grace is over.
    wait_for(lambda: set(evicted()) == {"1", "2", "3"}, GRACE * 6, "all unloaded once")
    before = len(evicted())
    # Called in turn, each wakes: version 1, woken and called first, is the least recently used.
    for version in ("1", "2", "3"):
        answer = server.score(KEPT, version, BODY)
        assert answer.status_code == 200, answer.text
    wait_for(lambda: len(evicted()) > before, GRACE * 4, "VERSION_EVICTED again")
    assert evicted()[before] == "1"
    wait_for(lambda: server.versions(KEPT)["1"].get("loaded") is False, 30, "listed idle")
    one = server.versions(KEPT)["1"]
    assert one["state"] == "VERSION_STATE_READY"
    assert one["idle_reason"] == "MEMORY_BUDGET"
    assert one["state_message"].startswith("Idle (unloaded for the memory budget)")
    assert one["last_request_timestamp"] > 0
    assert one.get("worker_pid") is None
    event = next(e for e in server.events(KEPT) if e["event_type"] == "VERSION_EVICTED")
    assert "Unloaded for the memory budget" in event["message"]
    metrics = server.client.get("/metrics").text
    assert "regserve_memory_budget_bytes 1.048576e+06" in metrics
    assert re.search(r'regserve_version_unloads_total\{reason="memory_budget"\} [1-9]', metrics)
    assert re.search(r"regserve_loaded_memory_bytes \d", metrics)

    # Its next request wakes it, and it stays loaded for the grace (no thrashing).
    answer = server.score(KEPT, "1", BODY)
    assert answer.status_code == 200, answer.text
    one = server.versions(KEPT)["1"]
    assert one["loaded"] is True
    assert one["idle_reason"] is None
    assert alive(one["worker_pid"])
