"""Worker sharing (here through the model's cluster tag ``regserve.share_workers=true``): the
versions of one model share one worker process, each answering with its own model, loaded,
unloaded and restarted there without failing the others' traffic."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.models import iris_frame, log_broken_version, train_iris
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "shared-model"
READY = "VERSION_STATE_READY"
C = {"1": 1.0, "2": 0.001, "3": 0.05}  # differently trained: different predictions


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegServeProcess]:
    process = RegServeProcess(tmp_path / "data").start()  # REGSERVE_SHARE_WORKERS is off
    yield process
    process.close()


@pytest.fixture
def registry(server: RegServeProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserRegistry]:
    with user_registry(monkeypatch, server.url, ADMIN_TOKEN) as reg:
        yield reg


FRAME, _ = iris_frame()
PAYLOAD = {"dataframe_split": FRAME.to_dict(orient="split")}
EXPECTED = {v: train_iris(c)[0].predict(FRAME).tolist() for v, c in C.items()}


def _pids(server: RegServeProcess) -> dict[str, Any]:
    return {v: info.get("worker_pid") for v, info in server.versions(MODEL).items()}


def _answers_itself(server: RegServeProcess, version: str) -> bool:
    r = server.score(MODEL, version, PAYLOAD)
    return r.status_code == 200 and r.json() == {"predictions": EXPECTED[version]}


class _Traffic:
    """Scores a version over and over on a thread; every answer must be its own, 200."""

    def __init__(self, server: RegServeProcess, version: str) -> None:
        self.failures: list[str] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server, version), daemon=True)
        self._thread.start()

    def _run(self, server: RegServeProcess, version: str) -> None:
        while not self._stop.is_set():
            r = server.score(MODEL, version, PAYLOAD)
            self.count += 1
            if r.status_code != 200 or r.json() != {"predictions": EXPECTED[version]}:
                self.failures.append(f"{r.status_code} {r.text[:200]}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_versions_share_one_process_and_live_their_own_lives(
    server: RegServeProcess, registry: UserRegistry
) -> None:
    assert len({tuple(p) for p in EXPECTED.values()}) == 3  # the models do differ
    registry.client.create_registered_model(MODEL)
    assert server.enable(MODEL).status_code == 200
    tags = [{"key": "regserve.share_workers", "value": "true"}]
    config = {"node_type_id": "local-default", "tags": tags}
    body = {"registered_model_name": MODEL, "desired_cluster_config": config}
    r = server.api("PUT", "update-cluster-config", json=body)
    assert r.status_code == 200, r.text
    assert registry.register(MODEL, C["1"]) == "1"
    assert registry.register(MODEL, C["2"]) == "2"
    server.wait_version_state(MODEL, "1", READY, timeout=60)
    server.wait_version_state(MODEL, "2", READY, timeout=60)

    # one process, each version answering with its own model
    pids = _pids(server)
    pid = pids["1"]
    assert pid is not None
    assert pids == {"1": pid, "2": pid}
    assert "--shared" in _cmdline(pid)
    assert _answers_itself(server, "1")
    assert _answers_itself(server, "2")

    # a new version loads into the same process while v2 is under traffic
    traffic = _Traffic(server, "2")
    try:
        assert registry.register(MODEL, C["3"]) == "3"
        server.wait_version_state(MODEL, "3", READY, timeout=60)
        assert _pids(server) == {"1": pid, "2": pid, "3": pid}
        assert _answers_itself(server, "3")

        # archiving v1 unloads it; the others keep serving from the same process
        registry.stage(MODEL, "1", "Archived")
        wait_for(lambda: server.score(MODEL, "1", PAYLOAD).status_code == 404, 30, "v1 gone")
        assert _pids(server) == {"2": pid, "3": pid}
        assert _answers_itself(server, "3")
    finally:
        traffic.stop()
    assert traffic.count > 0
    assert traffic.failures == []

    # a version that fails to load is FAILED with its own message; the others stay READY
    broken = log_broken_version(MODEL)
    failed = server.wait_version_state(MODEL, broken, "VERSION_STATE_FAILED", timeout=60)
    assert "deliberately broken model" in failed["state_message"]
    assert {v: s["state"] for v, s in server.versions(MODEL).items() if v != broken} == {
        "2": READY,
        "3": READY,
    }
    assert _pids(server)["2"] == pid
    assert _answers_itself(server, "2")

    # per-version logs: the version's own lines, then the shared worker's
    body = {"registered_model_name": MODEL, "endpoint_version_name": "3"}
    logs = server.api("POST", "get-version-logs", json=body).json()["logs"]
    assert "served by the shared worker" in logs
    assert "v3: model loaded in" in logs

    # kill -9 the shared process: every version in it comes back READY in a new one
    os.kill(pid, signal.SIGKILL)

    def back() -> bool:
        versions = server.versions(MODEL)
        new = {versions[v].get("worker_pid") for v in ("2", "3")}
        ready = all(versions[v]["state"] == READY for v in ("2", "3"))
        return ready and len(new) == 1 and pid not in new

    wait_for(back, 40, "v2 and v3 READY in a new shared worker")
    assert _answers_itself(server, "2")
    assert _answers_itself(server, "3")
    kinds = [(e["event_type"], e.get("endpoint_version_name")) for e in server.events(MODEL)]
    for version in ("2", "3"):
        assert ("WORKER_CRASHED", version) in kinds
        assert ("WORKER_RESTARTED", version) in kinds
