"""The batcher in process, with real models loaded by MLflow: what a batch answers (each request
exactly what it gets alone) and how queued requests become batches on the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow
import pytest

from regserve.worker import protocol, wire
from regserve.worker.batcher import Batcher, BatchRunner, batchable_by_default
from tests.support.models import save_iris_model, save_row_id_model, save_summary_model

JSON = "application/json"
CSV = "text/csv"
Requests = Sequence[tuple[bytes, str | None]]


def _load(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none
        return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def row_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _load(save_row_id_model(tmp_path_factory.mktemp("m") / "rows"))


def _records(ids: list[int], **params: Any) -> bytes:
    body: dict[str, Any] = {"dataframe_records": [{"id": i, "x": i + 0.25} for i in ids]}
    if params:
        body["params"] = params
    return json.dumps(body).encode()


def _split(ids: list[int]) -> bytes:
    data = [[i, i + 0.25] for i in ids]
    return json.dumps({"dataframe_split": {"columns": ["id", "x"], "data": data}}).encode()


def _alone(model: Any, body: bytes, content_type: str | None) -> wire.Response:
    return protocol.handle(body, content_type, model, model.metadata.get_input_schema())


def test_a_mixed_batch_answers_each_request_as_it_would_be_answered_alone(row_model: Any) -> None:
    requests: list[tuple[bytes, str | None]] = [
        (_records([1, 2]), JSON),
        (_split([3]), JSON),
        (b"id,x\n4,4.25\n5,5.25\n", CSV),
        (_records([6], scale=2.0), JSON),  # params: a group of its own
        (_records([-1]), JSON),  # poisons its group: that group is predicted one by one
        (b"{not json", JSON),  # fails to parse: its own error only
        (_records([7, 8, 9]), JSON),
    ]
    runner = BatchRunner(row_model, row_model.metadata.get_input_schema())
    answers = runner.run(requests)
    assert answers == [_alone(row_model, body, ct) for body, ct in requests]
    assert [a.status for a in answers] == [200, 200, 200, 200, 400, 400, 200]
    assert json.loads(answers[3].body)["predictions"] == [{"id": 6, "y": 12.5}]
    assert runner.combined_predicts >= 1
    assert runner.splittable


def test_a_model_without_one_answer_per_row_is_no_longer_batched(tmp_path: Path) -> None:
    model = _load(save_summary_model(tmp_path / "summary"))
    runner = BatchRunner(model, model.metadata.get_input_schema())
    requests: list[tuple[bytes, str | None]] = [(_records([1, 2]), JSON), (_records([10]), JSON)]
    answers = runner.run(requests)
    assert [json.loads(a.body)["predictions"] for a in answers] == [[3], [10]]
    assert not runner.splittable


def test_auto_batches_row_wise_flavors_only(row_model: Any, tmp_path: Path) -> None:
    iris = _load(save_iris_model(tmp_path / "iris"))
    assert batchable_by_default(iris)  # sklearn
    assert not batchable_by_default(row_model)  # a custom pyfunc sees the whole input


class Recorder:
    """A batch runner that echoes each body and writes down the batches it was given; with
    ``gate``, each batch waits for it (on an executor thread)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[bytes]] = []
        self.gate = gate

    def __call__(self, requests: Requests) -> list[wire.Response]:
        self.batches.append([body for body, _ in requests])
        if self.gate is not None:
            assert self.gate.wait(10)
        return [wire.Response(200, JSON, body) for body, _ in requests]


async def test_requests_of_one_loop_turn_go_together_up_to_the_batch_size() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, None, max_batch_size=2)
    answers = await asyncio.gather(*(batcher.submit(JSON, b"%d" % i) for i in range(5)))
    assert [a.body for a in answers] == [b"0", b"1", b"2", b"3", b"4"]
    assert recorder.batches == [[b"0", b"1"], [b"2", b"3"], [b"4"]]
    assert (batcher.batches, batcher.requests, batcher.batch_sizes) == (3, 5, {2: 2, 1: 1})


async def test_requests_that_arrive_while_a_batch_runs_form_the_next_batch() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(recorder, executor, max_batch_size=8)
        first = batcher.submit(JSON, b"first")
        await asyncio.sleep(0.05)  # the first batch is running now
        later = [batcher.submit(JSON, b"later-%d" % i) for i in range(3)]
        await asyncio.sleep(0.05)
        assert batcher.queued == 3
        gate.set()
        answers = await asyncio.gather(first, *later)
    assert [a.status for a in answers] == [200] * 4
    assert recorder.batches == [[b"first"], [b"later-0", b"later-1", b"later-2"]]


async def test_a_lone_request_waits_max_wait_for_company() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, None, max_batch_size=8, max_wait=0.2)
    first = batcher.submit(JSON, b"a")
    await asyncio.sleep(0.05)
    second = batcher.submit(JSON, b"b")
    await asyncio.gather(first, second)
    assert recorder.batches == [[b"a", b"b"]]


async def test_a_batch_that_raises_answers_each_of_its_requests_with_an_error() -> None:
    def broken(requests: Requests) -> list[wire.Response]:
        raise RuntimeError("boom")

    for executor in (None, ThreadPoolExecutor(1)):
        batcher = Batcher(broken, executor, max_batch_size=4)
        answers = await asyncio.gather(batcher.submit(JSON, b"1"), batcher.submit(JSON, b"2"))
        assert [a.status for a in answers] == [500, 500]
        assert {json.loads(a.body)["error_code"] for a in answers} == {"INTERNAL_ERROR"}
        if executor is not None:
            executor.shutdown()
