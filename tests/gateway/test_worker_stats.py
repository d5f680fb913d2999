"""BatchTally against a real worker process: the batches it ran between two samples."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from regserve.backends.local.client import WorkerClient
from regserve.gateway.worker_stats import BatchTally
from regserve.metrics import TrafficRecorder
from regserve.router import ModelRoutes, Router, ServedVersion
from regserve.states import VersionState
from tests.support.models import iris_frame, save_iris_model
from tests.worker.conftest import WorkerProcess

BODY = json.dumps({"dataframe_records": iris_frame()[0].head(1).to_dict(orient="records")})


@pytest.fixture(scope="module")
def batched_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker that waits 50 ms for company before each batch."""
    model_dir = save_iris_model(tmp_path_factory.mktemp("models") / "iris")
    workdir = Path(tempfile.mkdtemp(prefix="rsw-"))
    args = ("--batching", "on", "--max-batch-size", "8", "--max-batch-wait-ms", "50")
    process = WorkerProcess(model_dir, workdir, args=args)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_each_sample_counts_the_batches_run_since_the_last(
    batched_worker: WorkerProcess,
) -> None:
    client = WorkerClient(str(batched_worker.socket_path), "iris v1")
    try:
        await _sample_around_traffic(client)
    finally:
        client.close()


async def _sample_around_traffic(client: WorkerClient) -> None:
    router = Router()
    served = ServedVersion("1", "None", VersionState.READY, "ready", client)
    router.publish(ModelRoutes("iris", {"1": served}))
    recorder = TrafficRecorder()
    tally = BatchTally(router, recorder)

    async def score(n: int) -> None:
        answers = await asyncio.gather(
            *(client.request("application/json", BODY.encode(), 30) for _ in range(n))
        )
        assert [a.status for a in answers] == [200] * n

    await score(1)
    await tally.sample()
    (row,) = recorder.drain()
    assert (row["batches"], row["batched_requests"], row["batch_size_max"]) == (1, 1, 1)

    await tally.sample()
    assert recorder.drain() == []  # nothing ran since: nothing counted twice

    await score(8)  # at once: one batch of 8 (the batcher waits 50 ms for the others)
    await tally.sample("another-model")
    assert recorder.drain() == []
    await tally.sample("iris")
    (row,) = recorder.drain()
    assert row["batched_requests"] == 8
    assert row["batch_size_max"] > 1
    assert row["batches"] < 8
