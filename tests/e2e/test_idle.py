"""Idle versions against a real ``regserve up`` (REGSERVE_IDLE_TIMEOUT=2, scaled): a version nobody
calls has its workers stopped but stays READY in list-versions, its URLs and events say what
happened, ``/metrics`` counts it idle, and its next requests (several at once) are answered
200 by one wake, not 503."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.processes import alive
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

MODEL = "sleepy"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = {"dataframe_records": [ROW]}
IDLE_AFTER = scaled(2.0)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RegServeProcess]:
    server = RegServeProcess(tmp_path / "data", idle_timeout=f"{IDLE_AFTER:g}").start()
    try:
        with user_registry(monkeypatch, server.url, ADMIN_TOKEN) as registry:
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
