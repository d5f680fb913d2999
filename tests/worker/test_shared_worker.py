"""A shared worker process (``--shared``) over its socket: LOAD, BIND, REQUEST, UNLOAD."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regserve.worker import wire
from tests.worker.conftest import STARTUP_TIMEOUT, WireClient

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = json.dumps({"dataframe_records": [ROW]}).encode()


@pytest.fixture
def shared(short_dir: Path) -> Iterator[Path]:
    socket_path = short_dir / "s.sock"
    log = (short_dir / "shared.log").open("wb")
    cmd = [
        sys.executable,
        "-m",
        "regserve.worker",
        "--socket",
        str(socket_path),
        "--shared",
        "--name",
        "iris",
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not socket_path.exists():
        assert proc.poll() is None, "shared worker exited"
        assert time.monotonic() < deadline, "shared worker did not start"
        time.sleep(0.05)
    yield socket_path
    proc.terminate()
    assert proc.wait(timeout=20) == 0
    log.close()


def _control(client: WireClient, kind: int, payload: bytes) -> dict[str, Any]:
    request_id = client.new_id()
    client.sock.sendall(wire.encode_frame(request_id, kind, payload))
    frame = client.receive()
    assert (frame.request_id, frame.kind) == (request_id, wire.Kind.REPLY)
    reply: dict[str, Any] = json.loads(frame.payload)
    return reply


def _bound(socket_path: Path, version: str) -> WireClient:
    client = WireClient(socket_path)
    client.sock.sendall(wire.encode_frame(0, wire.Kind.BIND, version.encode()))
    return client


def test_load_bind_score_unload(shared: Path, iris_model_dir: Path, tmp_path: Path) -> None:
    control, v1, v2 = WireClient(shared), _bound(shared, "1"), _bound(shared, "2")
    try:
        _exercise(control, v1, v2, iris_model_dir, tmp_path)
    finally:
        for client in (control, v1, v2):
            client.close()


def _exercise(
    control: WireClient, v1: WireClient, v2: WireClient, model_dir: Path, tmp_path: Path
) -> None:
    assert control.ping()["versions"] == {}
    load = {"version": "1", "model_path": str(model_dir), "batching": "on"}
    assert _control(control, wire.Kind.LOAD, json.dumps(load).encode()) == {"ok": True, "error": ""}
    missing = {**load, "version": "2", "model_path": str(tmp_path / "nothing")}
    bad = _control(control, wire.Kind.LOAD, json.dumps(missing).encode())
    assert bad["ok"] is False
    assert "nothing" in bad["error"]
    assert control.ping()["versions"] == {"1": "ready"}

    status, _, body = v1.call("application/json", BODY)
    assert status == 200
    assert json.loads(body) == {"predictions": [0]}
    pong = v1.ping()
    assert (pong["version"], pong["state"], pong["batching"]["enabled"]) == ("1", "ready", True)
    status, _, body = v2.call("application/json", BODY)
    assert status == 503
    assert json.loads(body)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    unbound_status, _, _ = control.call("application/json", BODY)
    assert unbound_status == 503

    assert _control(control, wire.Kind.UNLOAD, b"1") == {"ok": True, "error": ""}
    assert v1.call("application/json", BODY)[0] == 503
    assert control.ping()["versions"] == {}
