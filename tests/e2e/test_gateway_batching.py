"""Batching through the real gateway: concurrent requests, each answered with its own rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from tests.support.models import log_row_id_version
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess
from tests.worker.conftest import WireClient

pytestmark = pytest.mark.e2e

MODEL = "row-ids"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    server = RegServeProcess(tmp_path_factory.mktemp("batching") / "data").start()
    try:
        yield from _serve_row_ids(server)
    finally:
        server.close()


def _serve_row_ids(server: RegServeProcess) -> Iterator[RegServeProcess]:
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN):
        # Serving is enabled and tagged before the version exists, so its worker starts with
        # the tags (they apply to workers started after a change).
        MlflowClient().create_registered_model(MODEL)
        assert server.enable(MODEL).status_code == 200
        node_types = server.client.get("/api/2.0/clusters/list-node-types").json()["node_types"]
        node = node_types[0]["node_type_id"]
        config = {"node_type_id": node, "tags": [{"key": "regserve.batching", "value": "on"}]}
        body = {"registered_model_name": MODEL, "desired_cluster_config": config}
        r = server.api("PUT", "update-cluster-config", json=body)
        assert r.status_code == 200, r.text
        log_row_id_version(MODEL)
        server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        yield server


def _request(n: int) -> tuple[str, bytes, Any]:
    """The n-th request (content type, body) and the answer it must get."""
    ids = [n * 10, n * 10 + 1]
    expected = [{"id": i, "y": (i + 0.5) * (n % 3 + 1)} for i in ids]
    records = [{"id": i, "x": i + 0.5} for i in ids]
    if n == 17:  # poisoned: the model raises on negative ids
        poison = {"dataframe_records": [{"id": -1, "x": 0.0}]}
        return "application/json", json.dumps(poison).encode(), None
    if n % 4 == 3:
        if n % 3:
            expected = [{"id": i, "y": i + 0.5} for i in ids]  # CSV carries no params
        csv = "id,x\n" + "".join(f"{r['id']},{r['x']}\n" for r in records)
        return "text/csv", csv.encode(), {"predictions": expected}
    params = {} if n % 3 == 0 else {"params": {"scale": float(n % 3 + 1)}}
    if n % 2:
        split = {"columns": ["id", "x"], "data": [[r["id"], r["x"]] for r in records]}
        return (
            "application/json",
            json.dumps({"dataframe_split": split, **params}).encode(),
            {"predictions": expected},
        )
    body = {"dataframe_records": records, **params}
    return "application/json", json.dumps(body).encode(), {"predictions": expected}


async def _fire(url: str, requests: list[tuple[str, bytes, Any]]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(url, content=body, headers={"Content-Type": ct})
                for ct, body, _ in requests
            )
        )


def _worker_stats(server: RegServeProcess) -> dict[str, Any]:
    # The serving worker's socket, from its record (<digest>.pid); the template it was forked
    # from, the template's standby and the model's warm process have control sockets and
    # records of their own (*.tpl, *.tpl.standby, *.warm).
    run_dir = Path(server.data_dir, "run")
    (socket_path,) = [json.loads(p.read_text())["socket"] for p in run_dir.glob("*.pid")]
    client = WireClient(socket_path)
    try:
        return dict(client.ping()["batching"])
    finally:
        client.close()


def test_concurrent_requests_through_the_gateway_get_their_own_answers(
    server: RegServeProcess,
) -> None:
    requests = [_request(n) for n in range(300)]
    url = f"{server.url}/model/{MODEL}/1/invocations"
    answers = asyncio.run(_fire(url, requests))
    for n, ((_, _, expected), answer) in enumerate(zip(requests, answers, strict=True)):
        if expected is None:
            assert answer.status_code == 400, (n, answer.text)
            assert answer.json()["error_code"] == "BAD_REQUEST"
        else:
            assert answer.status_code == 200, (n, answer.text)
            assert answer.json() == expected, n
    stats = _worker_stats(server)
    assert stats["enabled"] is True
    assert stats["combined_predicts"] > 0


def test_metric_history_shows_the_batches_and_the_queue(server: RegServeProcess) -> None:
    requests = [_request(n) for n in range(200) if n != 17]
    url = f"{server.url}/model/{MODEL}/1/invocations"
    answers = asyncio.run(_fire(url, requests))
    assert [a.status_code for a in answers] == [200] * len(requests)

    # get-metric-history counts what the gateway and the worker saw so far (no flush wait).
    r = server.api("GET", "get-metric-history", params={"registered_model_name": MODEL})
    assert r.status_code == 200, r.text
    by_key: dict[str, list[float]] = {}
    for point in r.json()["metrics"]:
        assert point["endpoint_version_name"] == "1"
        by_key.setdefault(point["key"], []).append(point["value"])
    # 200 requests at once: the worker combined some, and many were open at the gateway.
    assert max(by_key["batch_size_mean"]) > 1
    assert max(by_key["batch_size_max"]) > 1
    assert max(by_key["batch_size_max"]) <= _worker_stats(server)["max_batch_size"]
    assert max(by_key["queue_depth_max"]) > 1
    assert max(by_key["queue_depth_max"]) <= 64  # the client's connections
    assert sum(by_key["requests_per_minute"]) >= len(requests)
