"""`regserve up` listens before its registry is ready; what answers meanwhile; the demo's
console from the first line to Ctrl-C (issue 19)."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.models import log_iris_version
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "start-iris"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
SEARCH = "/api/2.0/mlflow/registered-models/search"


def _console(server: RegServeProcess) -> list[str]:
    return server.log_path.read_text().splitlines()


def test_a_restart_listens_and_scores_before_its_registry_is_ready(tmp_path: Path) -> None:
    server = RegServeProcess(tmp_path / "data").start()
    try:
        with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN):
            log_iris_version(MODEL)
        assert server.enable(MODEL).status_code == 200
        worker = server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")["worker_pid"]
        server.stop()  # SIGTERM: the worker is kept for the next start
        # The registry waits 20 s once listening (a test-only setting): the window is certain.
        server.env["REGSERVE_REGISTRY_START_DELAY"] = "20"
        server.start(ready=False)

        health = httpx.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 503
        assert health.headers["retry-after"] == "2"
        assert health.json()["status"] == "starting"
        assert health.json()["starting"] == ["registry", "controller"]
        assert health.json()["boot_id"]
        mlflow_route = server.client.get(SEARCH)
        assert mlflow_route.status_code == 503
        assert mlflow_route.headers["retry-after"] == "2"
        assert mlflow_route.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert "registry is starting" in mlflow_route.json()["message"]
        assert httpx.get(f"{server.url}{SEARCH}").status_code == 401  # a token first, still
        # the worker the previous process left answers at once, from the stored routes
        scored = server.score(MODEL, "1", {"dataframe_records": [ROW]})
        assert scored.status_code == 200, scored.text
        assert scored.json() == {"predictions": [0]}
        # this second start's "listening" line (the log file is the two starts')
        assert sum("listening on" in line for line in _console(server)) == 2

        wait_for(lambda: httpx.get(f"{server.url}/health").status_code == 200, 90, "ready")
        health = httpx.get(f"{server.url}/health").json()
        assert health["status"] == "ok"
        assert "starting" not in health
        assert server.client.get(SEARCH).status_code == 200
        version = server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        assert version["worker_pid"] == worker  # adopted once the registry was ready
        assert server.score(MODEL, "1", {"dataframe_records": [ROW]}).status_code == 200
    finally:
        server.close()


def test_the_demo_says_each_step_then_a_curl_that_scores_and_what_ctrl_c_stops(
    tmp_path: Path,
) -> None:
    server = RegServeProcess(tmp_path / "data")
    del server.env["REGSERVE_ADMIN_TOKEN"]  # as `make run`: a token made and kept in a file
    server.start("--demo", ready=False)
    try:
        wait_for(lambda: any(line.startswith("ready: ") for line in _console(server)), 300, "ready")
        lines = _console(server)
        steps = [line for line in lines if not re.match(r"\d{4}-\d\d-\d\d ", line)]
        listening = next(i for i, line in enumerate(steps) if "listening on" in line)
        progress = steps[listening:]
        order = ["registering the demo model...", "loading...", "ready: "]
        found = [next(i for i, line in enumerate(progress) if line.startswith(s)) for s in order]
        assert found == sorted(found), progress
        for step in order:
            assert sum(line.startswith(step) for line in progress) == 1, progress
        assert "building environment" not in "\n".join(progress)  # --env-manager local

        curl = progress[found[-1]].removeprefix("ready: ")
        assert "Content-Type: application/json" in curl
        assert "/model/iris-classifier/Production/invocations" in curl
        done = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert '"predictions"' in done.stdout, done.stdout

        server.stop(signal.SIGINT)
        assert server.process is not None
        assert server.process.returncode == 0
        tail = _console(server)[len(lines) :]
        assert any(re.fullmatch(r"stopping: [1-9]\d* workers?\.\.\.", line) for line in tail), tail
        assert tail[-1] == "stopped", tail
        console = "\n".join(_console(server))
        assert "alembic" not in console
        assert "INFO mlflow.store.db.utils" not in console
    finally:
        server.close()
