"""The whole story of the serving core, through real processes, registry and sockets."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.registry import UserRegistry
from tests.support.server import RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "story-model"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split()[2] != "Z"


def _answered_by(server: RegServeProcess, ref: str) -> str | None:
    r = server.score(MODEL, ref, {"dataframe_records": [ROW]})
    if r.status_code != 200:
        return None
    assert r.json() == {"predictions": [0]}
    return r.headers["x-model-version"]


def test_the_whole_story(regserve: RegServeProcess, registry: UserRegistry) -> None:
    # register v1 (Staging, alias champion) -> enable -> READY
    assert registry.register(MODEL) == "1"
    registry.stage(MODEL, "1", "Staging")
    registry.alias(MODEL, "champion", "1")
    started = time.monotonic()
    assert regserve.enable(MODEL).json() == {}
    v1 = regserve.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
    print(f"enable -> v1 READY: {time.monotonic() - started:.2f} s")
    assert regserve.status(MODEL)["state"] == "ENDPOINT_STATE_READY"

    # score by version, stage, alias and latest
    for ref in ["1", "Staging", "staging", "champion", "@champion", "latest"]:
        assert _answered_by(regserve, ref) == "1", ref
    r = regserve.score(MODEL, "Production", {"dataframe_records": [ROW]})
    assert r.status_code == 404
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # register v2: served without any call
    assert registry.register(MODEL, c=0.5) == "2"
    started = time.monotonic()
    regserve.wait_version_state(MODEL, "2", "VERSION_STATE_READY")
    print(f"v2 registered -> READY: {time.monotonic() - started:.2f} s")
    assert _answered_by(regserve, "latest") == "2"

    # move v2 to Production: the Production URL answers from v2
    started = time.monotonic()
    registry.stage(MODEL, "2", "Production")
    wait_for(lambda: _answered_by(regserve, "Production") == "2", 30, "Production -> v2")
    print(f"stage move -> URL follows: {time.monotonic() - started:.2f} s")

    # archive v1: its URL gives 404 and its worker process is gone
    registry.stage(MODEL, "1", "Archived")
    wait_for(
        lambda: regserve.score(MODEL, "1", {"dataframe_records": [ROW]}).status_code == 404,
        30,
        "v1 URL to give 404",
    )
    assert "1" not in regserve.versions(MODEL)
    wait_for(lambda: not _alive(v1["worker_pid"]), 20, "v1's worker to exit")
    r = regserve.score(MODEL, "champion", {"dataframe_records": [ROW]})
    assert r.status_code == 404
    assert "archived" in r.json()["message"]

    # kill -9 a worker: it comes back, and the events say so
    old_pid = regserve.versions(MODEL)["2"]["worker_pid"]
    os.kill(old_pid, signal.SIGKILL)
    wait_for(
        lambda: (
            regserve.versions(MODEL)["2"].get("worker_pid") not in (None, old_pid)
            and regserve.versions(MODEL)["2"]["state"] == "VERSION_STATE_READY"
        ),
        30,
        "v2 to be restarted",
    )
    assert _answered_by(regserve, "Production") == "2"
    types = [
        e["event_type"] for e in regserve.events(MODEL) if e.get("endpoint_version_name") == "2"
    ]
    assert "WORKER_CRASHED" in types
    assert "WORKER_RESTARTED" in types
    crashed = next(e for e in regserve.events(MODEL) if e["event_type"] == "WORKER_CRASHED")
    assert "SIGKILL" in crashed["message"]

    # disable: no worker left
    pid = regserve.versions(MODEL)["2"]["worker_pid"]
    assert regserve.disable(MODEL).json() == {}
    assert not _alive(pid)
    r = regserve.score(MODEL, "2", {"dataframe_records": [ROW]})
    assert r.status_code == 404
    status = regserve.api("GET", "get-status", params={"registered_model_name": MODEL})
    assert status.status_code == 400
    assert status.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    # enable again, then restart regserve: it serves again without any call, from the same
    # worker (adopted: SIGTERM leaves the workers for the next start)
    regserve.enable(MODEL)
    worker = regserve.wait_version_state(MODEL, "2", "VERSION_STATE_READY")["worker_pid"]
    regserve.stop()
    regserve.start()
    wait_for(lambda: _answered_by(regserve, "Production") == "2", 120, "serving after restart")
    assert regserve.versions(MODEL)["2"]["worker_pid"] == worker
    types = [e["event_type"] for e in regserve.events(MODEL)]
    for expected in [
        "SERVING_ENABLED",
        "CLUSTER_STARTED",
        "VERSION_DEPLOYING",
        "VERSION_READY",
        "VERSION_REMOVED",
        "SERVING_DISABLED",
        "CLUSTER_TERMINATED",
        "WORKER_ADOPTED",
    ]:
        assert expected in types, expected

    # stopping regserve for good (SIGINT, Ctrl-C) stops its workers
    pid = regserve.versions(MODEL)["2"]["worker_pid"]
    regserve.stop(signal.SIGINT)
    assert regserve.process is not None
    assert regserve.process.returncode == 0
    assert not _alive(pid)
