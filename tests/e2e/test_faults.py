"""Faults that must cost no served request and no committed change: the registry going
away and coming back, and ``kill -9`` of regserve in the middle of writes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.models import iris_requirements, log_sleepy_version
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, free_port, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
KILL_RESTARTS = int(os.environ.get("REGSERVE_TEST_KILL_RESTARTS", "5"))


class MlflowServer:
    """``mlflow server`` on a SQLite file: a registry that can be taken down and brought back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MlflowServer:
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'registry.db'}",
            "--artifacts-destination",
            str(self.root / "artifacts"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        with (self.root / "mlflow-server.log").open("ab") as log:
            self.process = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self._up, 120, f"mlflow server on {self.url}")
        return self

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def register(self, name: str) -> str:
        script = (
            "import mlflow, sys\n"
            "from tests.support.models import log_iris_version\n"
            "mlflow.set_tracking_uri(sys.argv[1])\n"
            "print(log_iris_version(sys.argv[2], requirements=sys.argv[3:]))\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        done = subprocess.run(
            [sys.executable, "-c", script, self.url, name, *iris_requirements()],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path).start()
    yield server
    server.kill()


def _event_types(server: RegServeProcess, name: str) -> list[str]:
    return [e["event_type"] for e in server.events(name)]


def test_registry_outage_keeps_serving_and_recovers(registry: MlflowServer, tmp_path: Path) -> None:
    assert registry.register("outage-model") == "1"
    server = RegServeProcess(tmp_path / "data").start("--registry-uri", registry.url)
    try:
        assert server.enable("outage-model").status_code == 200
        server.wait_version_state("outage-model", "1", "VERSION_STATE_READY")

        registry.kill()
        wait_for(
            lambda: "REGISTRY_UNAVAILABLE" in _event_types(server, "outage-model"),
            30,
            "the outage to be recorded",
        )
        statuses = [
            server.score("outage-model", "1", {"dataframe_records": [ROW]}).status_code
            for _ in range(50)
        ]
        assert statuses == [200] * 50
        assert server.versions("outage-model")["1"]["state"] == "VERSION_STATE_READY"
        outage = next(
            e for e in server.events("outage-model") if e["event_type"] == "REGISTRY_UNAVAILABLE"
        )
        assert "serving what runs" in outage["message"]

        registry.start()  # the same port and database
        wait_for(
            lambda: "REGISTRY_RECOVERED" in _event_types(server, "outage-model"),
            60,
            "the registry to be seen again",
        )
        assert registry.register("outage-model") == "2"
        server.wait_version_state("outage-model", "2", "VERSION_STATE_READY")
        r = server.score("outage-model", "latest", {"dataframe_records": [ROW]})
        assert r.status_code == 200, r.text
    finally:
        server.close()


# -- kill -9 during writes ---------------------------------------------------------------------

SCIM = "/api/2.0/preview/scim/v2"
EP = "/api/2.0/preview/mlflow/endpoints"
MODEL = "durable-model"


@dataclass
class Acknowledged:
    """Changes the server answered 200 to: each must survive any crash after the answer."""

    principals: list[str] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    """Every tag value sent; the stored one must be the last acknowledged or a later one."""
    acked_tags: list[str] = field(default_factory=list)


def _write_until_dead(server: RegServeProcess, acked: Acknowledged, prefix: str) -> None:
    """Make changes one after another until the server stops answering."""
    with httpx.Client(base_url=server.url, headers=server.client.headers, timeout=5) as http:
        for i in range(10_000):
            name = f"{prefix}-{i}"
            try:
                r = http.post(f"{SCIM}/Users", json={"userName": name})
                if r.status_code != 200:
                    return
                acked.principals.append(name)
                r = http.patch(
                    f"/api/2.0/permissions/registered-models/{MODEL}",
                    json={
                        "access_control_list": [{"user_name": name, "permission_level": "CAN_READ"}]
                    },
                )
                if r.status_code != 200:
                    return
                acked.grants.append(name)
                r = http.post("/api/2.0/token/create", json={"comment": name})
                if r.status_code != 200:
                    return
                acked.tokens.append(r.json()["token_info"]["token_id"])
                acked.tags.append(name)
                r = http.put(
                    f"{EP}/update-cluster-config",
                    json={
                        "registered_model_name": MODEL,
                        "desired_cluster_config": {
                            "node_type_id": "local-default",
                            "tags": [{"key": "marker", "value": name}],
                        },
                    },
                )
                if r.status_code != 200:
                    return
                acked.acked_tags.append(name)
            except httpx.HTTPError:
                return


def _check_nothing_lost(server: RegServeProcess, acked: Acknowledged) -> None:
    users = {u["userName"] for u in server.client.get(f"{SCIM}/Users").json()["Resources"]}
    assert set(acked.principals) <= users
    acl = server.client.get(f"/api/2.0/permissions/registered-models/{MODEL}").json()
    granted = {e.get("user_name") for e in acl["access_control_list"]}
    assert set(acked.grants) <= granted
    listed = server.client.get("/api/2.0/token-management/tokens").json()["token_infos"]
    assert set(acked.tokens) <= {t["token_id"] for t in listed}
    r = server.api("GET", "list")
    endpoint = next(e for e in r.json()["endpoints"] if e["registered_model_name"] == MODEL)
    config = endpoint.get("desired_cluster_config") or endpoint["actual_cluster_config"]
    tags = {t["key"]: t["value"] for t in config.get("tags", [])}
    if acked.acked_tags:
        last = acked.tags.index(acked.acked_tags[-1])
        assert tags.get("marker") in acked.tags[last:], (tags, acked.acked_tags[-1])
    audit = server.client.get("/api/2.0/regserve/audit-events", params={"max_events": 10_000})
    created = [e["message"] for e in audit.json()["events"] if e["event_type"] == "TOKEN_CREATED"]
    for token_id in acked.tokens:
        assert any(token_id in m for m in created), token_id


def test_kill_9_during_writes_loses_no_acknowledged_change(tmp_path: Path) -> None:
    server = RegServeProcess(tmp_path / "data").start()
    acked = Acknowledged()
    rng = random.Random(7)
    try:
        r = server.client.post("/api/2.0/mlflow/registered-models/create", json={"name": MODEL})
        assert r.status_code == 200, r.text
        assert server.enable(MODEL).status_code == 200
        for round_ in range(KILL_RESTARTS):
            writer = threading.Thread(target=_write_until_dead, args=(server, acked, f"u{round_}"))
            writer.start()
            time.sleep(rng.uniform(0.3, 1.5))
            server.stop(signal.SIGKILL)
            writer.join(timeout=30)
            server.start()
            _check_nothing_lost(server, acked)
        assert len(acked.tokens) >= KILL_RESTARTS  # the writers did get work done
        checked = len(acked.principals) + len(acked.grants) + len(acked.tokens)
        checked += len(acked.acked_tags)
        print(f"\nkill -9 restarts: {KILL_RESTARTS}; acknowledged changes checked: {checked}")
    finally:
        server.close()


def test_sigterm_drains_requests_in_flight(
    regserve: RegServeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests accepted before SIGTERM are answered before regserve stops its workers."""
    with user_registry(monkeypatch, regserve.url, ADMIN_TOKEN):
        log_sleepy_version("drain-model", 2.0)
    assert regserve.enable("drain-model").status_code == 200
    regserve.wait_version_state("drain-model", "1", "VERSION_STATE_READY")
    answers: list[int] = []

    def call() -> None:
        r = httpx.post(
            f"{regserve.url}/model/drain-model/1/invocations",
            json={"dataframe_records": [ROW]},
            timeout=30,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        answers.append(r.status_code)

    callers = [threading.Thread(target=call) for _ in range(4)]
    for caller in callers:
        caller.start()
    time.sleep(0.7)  # accepted and waiting on the model
    assert regserve.process is not None
    regserve.process.send_signal(signal.SIGTERM)
    for caller in callers:
        caller.join(timeout=30)
    assert answers == [200] * 4
    assert regserve.process.wait(timeout=30) == 0
