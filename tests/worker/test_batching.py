"""Adaptive batching through real worker processes: every answer is the one it gets alone.

Requests are written to the worker's socket all at once, so they arrive in one read and are
batched; each answer is compared byte for byte with the answer to the same request sent alone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regserve.worker import wire
from tests.support.models import save_row_id_model, save_summary_model

from .conftest import WireClient, WorkerProcess

JSON = "application/json"
CSV = "text/csv"


def _records(ids: list[int], **params: Any) -> bytes:
    body: dict[str, Any] = {"dataframe_records": [{"id": i, "x": i + 0.25} for i in ids]}
    if params:
        body["params"] = params
    return json.dumps(body).encode()


def _split(ids: list[int], **params: Any) -> bytes:
    body: dict[str, Any] = {
        "dataframe_split": {"columns": ["id", "x"], "data": [[i, i + 0.25] for i in ids]}
    }
    if params:
        body["params"] = params
    return json.dumps(body).encode()


def _csv(ids: list[int]) -> bytes:
    return ("id,x\n" + "".join(f"{i},{i + 0.25}\n" for i in ids)).encode()


def _start(model_dir: Path, *args: str) -> Iterator[WorkerProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="rsb-"))
    process = WorkerProcess(model_dir, workdir, name="rows", args=args)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def row_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_row_id_model(tmp_path_factory.mktemp("models") / "rows")


@pytest.fixture(scope="module")
def row_worker(row_model_dir: Path) -> Iterator[WorkerProcess]:
    yield from _start(row_model_dir, "--batching", "on", "--max-batch-size", "64")


def _all_at_once(client: WireClient, requests: list[tuple[str, bytes]]) -> list[wire.Response]:
    """Send every request before reading any answer; answers in request order."""
    ids = [client.new_id() for _ in requests]
    frames = [wire.encode_request(i, ct, body) for i, (ct, body) in zip(ids, requests, strict=True)]
    client.sock.sendall(b"".join(frames))
    answers: dict[int, wire.Response] = {}
    while len(answers) < len(ids):
        frame = client.receive()
        answers[frame.request_id] = wire.decode_response(frame.payload)
    return [answers[i] for i in ids]


def _stats(client: WireClient) -> dict[str, Any]:
    return dict(client.ping()["batching"])


def test_many_concurrent_requests_each_get_their_own_rows(row_worker: WorkerProcess) -> None:
    client = WireClient(row_worker.socket_path)
    requests = [(JSON, _records([n * 10 + k for k in range(n % 3 + 1)])) for n in range(200)]
    before = _stats(client)
    answers = _all_at_once(client, requests)
    after = _stats(client)
    for n, answer in enumerate(answers):
        assert answer.status == 200, answer.body
        expected = [{"id": n * 10 + k, "y": n * 10 + k + 0.25} for k in range(n % 3 + 1)]
        assert json.loads(answer.body) == {"predictions": expected}
    assert after["requests"] - before["requests"] == 200
    assert after["batches"] - before["batches"] < 20  # they were batched ...
    assert after["combined_predicts"] > before["combined_predicts"]  # ... and predicted together
    client.close()


def test_mixed_formats_params_and_a_poisoned_request(row_worker: WorkerProcess) -> None:
    client = WireClient(row_worker.socket_path)
    requests: list[tuple[str, bytes]] = []
    for n in range(60):
        ids = [n * 100, n * 100 + 1]
        requests += [
            (JSON, _records(ids)),
            (JSON, _split(ids, scale=2.0)),
            (JSON, _records(ids, scale=3.0)),
            (CSV, _csv(ids)),
            (JSON, json.dumps({"dataframe_records": [{"id": n, "x": "text"}]}).encode()),
        ]
    requests.insert(37, (JSON, _records([-1])))  # poison: predict raises
    requests.insert(80, (JSON, b"{not json"))  # does not parse
    requests.insert(90, (JSON, _split([5], scale="not a number")))  # params the schema refuses
    requests.insert(120, (CSV, b"id,x\n7,abc\n"))  # a CSV row that does not parse
    requests.insert(150, (CSV, b'x,id\n"1.5",3\n'))  # columns reordered, quoted
    alone = [client.call(ct, body) for ct, body in requests]
    together = _all_at_once(client, requests)
    assert together == alone  # status, content type and body, byte for byte
    statuses = {answer.status for answer in alone}
    assert statuses == {200, 400}
    assert alone[37].status == 400
    assert b"BAD_REQUEST" in alone[37].body
    assert json.loads(alone[1].body) == {"predictions": [{"id": 0, "y": 0.5}, {"id": 1, "y": 2.5}]}
    client.close()


def test_every_answer_matches_a_lone_request_at_any_batch_size(row_model_dir: Path) -> None:
    for process in _start(row_model_dir, "--batching", "on", "--max-batch-size", "3"):
        client = WireClient(process.socket_path)
        requests = [(JSON, _records([i, i + 1])) for i in range(50)]
        alone = [client.call(ct, body) for ct, body in requests]
        assert _all_at_once(client, requests) == alone
        assert _stats(client)["batches"] >= 50 + 50 // 3
        client.close()


def test_a_model_whose_output_is_not_per_row_is_not_batched(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    model_dir = save_summary_model(tmp_path_factory.mktemp("models") / "summary")
    for process in _start(model_dir, "--batching", "on"):
        client = WireClient(process.socket_path)
        requests = [(JSON, _records([i, 1000])) for i in range(40)]
        answers = _all_at_once(client, requests)
        assert [json.loads(a.body) for a in answers] == [
            {"predictions": [i + 1000]} for i in range(40)
        ]
        assert _all_at_once(client, requests) == answers  # and again, now alone by itself
        assert "not batched any more" in process.log()
        client.close()


def test_auto_does_not_batch_a_custom_pyfunc(row_model_dir: Path) -> None:
    for process in _start(row_model_dir):
        client = WireClient(process.socket_path)
        assert _stats(client)["enabled"] is False
        requests = [(JSON, _records([i])) for i in range(20)]
        answers = _all_at_once(client, requests)
        assert all(a.status == 200 for a in answers)
        assert _stats(client)["combined_predicts"] == 0
        client.close()
