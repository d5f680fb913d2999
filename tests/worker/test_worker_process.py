"""The worker as a real process on a real Unix socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd

from regserve.worker import wire
from tests.conformance_cases import COLUMNS, SPLIT

from .conftest import WireClient, WorkerProcess

JSON = "application/json"
GOOD = json.dumps({"dataframe_split": SPLIT}).encode()
EXPECTED = {"predictions": [0, 2, 1]}


def test_ping_describes_the_worker(worker: WorkerProcess, client: WireClient) -> None:
    pong = client.ping()
    assert pong == {
        "pid": worker.proc.pid,
        "state": "ready",
        "name": "iris",
        "version": "1",
        "protocol": wire.PROTOCOL_VERSION,
        "mlflow_version": mlflow.__version__,
        "python": pong["python"],
        "batching": pong["batching"],
    }
    assert pong["batching"]["enabled"] is True  # iris is a scikit-learn model
    assert pong["batching"]["max_batch_size"] == 64
    assert pong["python"] == "{}.{}.{}".format(*sys.version_info[:3])


def test_scores_a_request(client: WireClient) -> None:
    response = client.call(JSON, GOOD)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert json.loads(response.body) == EXPECTED


def test_many_requests_in_flight_on_one_connection(client: WireClient) -> None:
    bodies = {}
    for i in range(60):
        request_id = 1000 + i
        bodies[request_id] = GOOD if i % 3 else b"{broken"
        client.send_request(request_id, JSON, bodies[request_id])
    client.send_ping(5000)
    answers: dict[int, wire.Response] = {}
    pongs = 0
    while len(answers) < len(bodies) or not pongs:
        frame = client.receive()
        if frame.kind == wire.Kind.PONG:
            pongs += 1
            continue
        assert frame.kind == wire.Kind.RESPONSE
        answers[frame.request_id] = wire.decode_response(frame.payload)
    assert set(answers) == set(bodies)
    for request_id, body in bodies.items():
        assert answers[request_id].status == (200 if body == GOOD else 400)


def test_poisoned_requests_do_not_kill_the_worker(
    worker: WorkerProcess, client: WireClient
) -> None:
    poison = [
        (JSON, b"[" * 200_000),
        (JSON, b"\xff\xfe\x00garbage"),
        ("application/vnd.apache.parquet", b"PAR1\x00\x00PAR1"),
        ("text/csv", b"\x00\x01\x02\n\n\n,,,,"),
        (None, b""),
        (JSON, json.dumps({"dataframe_records": [{c: "x" * 10_000 for c in COLUMNS}]}).encode()),
    ]
    for content_type, body in poison:
        response = client.call(content_type, body)
        assert 400 <= response.status < 600
        assert set(json.loads(response.body)) >= {"error_code", "message"}
    # A frame of an unknown kind is ignored; a REQUEST too short to hold its header is a 400.
    client.sock.sendall(wire.encode_frame(77, 99, b"???"))
    client.sock.sendall(wire.encode_frame(78, wire.Kind.REQUEST, b"\x01"))
    frame = client.receive()
    assert frame.request_id == 78
    assert wire.decode_response(frame.payload).status == 400
    assert json.loads(client.call(JSON, GOOD).body) == EXPECTED
    assert worker.proc.poll() is None
    assert b"\xff\xfe\x00garbage" not in worker.log_path.read_bytes()


def test_model_load_failure_exits_3_with_traceback(tmp_path: Path, short_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors: {python_function: {loader_module: no_such_mod}}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "regserve.worker",
            "--socket",
            str(short_dir / "w.sock"),
            "--model-path",
            str(broken),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert not (short_dir / "w.sock").exists()


def test_sigterm_finishes_in_flight_work_and_removes_the_socket(
    iris_model_dir: Path, short_dir: Path
) -> None:
    (short_dir / "w.sock").write_text("stale")  # a leftover of a crashed worker
    process = WorkerProcess(iris_model_dir, short_dir)
    try:
        process.wait_ready()
        client = WireClient(process.socket_path)
        frame = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]] * 50_000, columns=COLUMNS)
        client.send_request(1, "text/csv", frame.to_csv(index=False).encode())
        # Frames are read in order: once the PING is answered the request has been read. A
        # batched predict runs on the worker's loop, so its answer may come before the PONG.
        client.send_ping(2)
        frames = {}
        while 2 not in frames:
            received = client.receive()
            frames[received.request_id] = received
        process.proc.terminate()
        answer = frames[1] if 1 in frames else client.receive()
        assert (answer.request_id, answer.kind) == (1, wire.Kind.RESPONSE)
        response = wire.decode_response(answer.payload)
        assert response.status == 200
        assert len(json.loads(response.body)["predictions"]) == 50_000
        assert process.proc.wait(timeout=30) == 0
        assert not process.socket_path.exists()
        assert "stopped" in process.log()
        client.close()
    finally:
        process.stop()


def test_worker_does_not_read_the_environment_for_its_socket(worker: WorkerProcess) -> None:
    # The socket is where --socket says, with no REGSERVE_ variable involved.
    assert worker.socket_path.exists()
    assert not any(key.startswith("REGSERVE_WORKER") for key in os.environ)
