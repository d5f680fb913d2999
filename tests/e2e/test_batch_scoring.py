"""Batch scoring of a few thousand rows under a payload limit that forces splitting, through
the Python client and ``regserve score``, checked row by row against the model itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from regserve.client import BadRequestError, Client, NotFoundError, RetryPolicy
from tests.support.cli import ok, run_cli
from tests.support.models import IRIS_COLUMNS
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "batch-iris"
ROWS = 3000
# 256 iris rows encode to about 6 KB: each default-sized chunk is over the limit.
PAYLOAD_LIMIT = 4096


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegServeProcess, Any]]:
    server = RegServeProcess(
        tmp_path_factory.mktemp("batch") / "data",
        max_payload_bytes=str(PAYLOAD_LIMIT),
        rate_limit_rps="8",  # low enough that the client meets 429s and must retry them
    )
    server.start()
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
        reg.register(MODEL)
        # Registering spent the admin token's rate budget: enabling may need a retry.
        wait_for(lambda: server.enable(MODEL).status_code == 200, 30, f"enabling {MODEL}")
        server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
        yield server, model
    server.close()


def _rows(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    low, high = np.array([4.0, 2.0, 1.0, 0.1]), np.array([8.0, 4.5, 7.0, 2.5])
    values = np.round(rng.uniform(low, high, size=(ROWS, 4)), 2)
    return pd.DataFrame(values, columns=IRIS_COLUMNS)


def test_client_scores_in_order_under_the_limit(world: tuple[RegServeProcess, Any]) -> None:
    server, model = world
    frame = _rows(1)
    frame.index = pd.Index(np.arange(ROWS)[::-1] * 7)  # predictions must follow this index
    chunks: list[int] = []
    retried: list[int] = []
    policy = RetryPolicy(on_retry=lambda status, _delay: retried.append(status))
    with Client(server.url, ADMIN_TOKEN) as client:
        scored = client.score(frame, MODEL, "1", retry=policy, on_progress=chunks.append)
        expected = model.predict(frame)
        assert list(scored.index) == list(frame.index)
        assert list(scored["prediction"]) == list(expected)
        assert sum(chunks) == ROWS
        assert max(chunks) < 256  # split below the default batch to fit the payload limit
        assert 429 in retried  # rate-limited requests were retried, and nothing was lost

        # A sample of rows, one request each, answer exactly as in the batch.
        for i in np.random.default_rng(2).choice(ROWS, 15, replace=False):
            row = frame.iloc[[i]].to_dict(orient="records")
            single = client.predict(MODEL, "1", {"dataframe_records": row})
            assert single["predictions"] == [scored["prediction"].iloc[i]]

        records = frame.head(40).to_dict(orient="records")
        by_records = client.score(records, MODEL, "latest", batch_size=16)
        assert list(by_records["prediction"]) == list(expected[:40])
        array = frame.head(40).to_numpy()
        by_array = client.score(array, MODEL, "1", columns=IRIS_COLUMNS)
        assert list(by_array["prediction"]) == list(expected[:40])
        with pytest.raises(BadRequestError, match="missing inputs"):  # a tensor, as MLflow says
            client.score(array, MODEL, "1")
        with pytest.raises(NotFoundError, match="no-such-model"):
            client.score(records, "no-such-model")


def test_cli_writes_input_joined_with_predictions(
    world: tuple[RegServeProcess, Any], tmp_path: Path
) -> None:
    server, model = world
    frame = _rows(3)
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "scored.parquet"
    done = run_cli(server.url, "score", f"models:/{MODEL}/1", str(source), "-o", str(out))
    ok(done)
    assert "rows/s" in done.stderr
    scored = pd.read_parquet(out)
    read_back = pd.read_csv(source)
    assert list(scored.columns) == [*IRIS_COLUMNS, "prediction"]
    pd.testing.assert_frame_equal(scored[IRIS_COLUMNS], read_back)
    assert list(scored["prediction"]) == list(model.predict(read_back))

    # jsonl in, csv out, a scoring URL naming the host, small batches.
    lines = tmp_path / "rows.jsonl"
    frame.head(500).to_json(lines, orient="records", lines=True)
    out_csv = tmp_path / "scored.csv"
    url = f"{server.url}/model/{MODEL}/latest/invocations"
    ok(run_cli(None, "score", url, str(lines), "-o", str(out_csv), "--batch-size", "64"))
    from_csv = pd.read_csv(out_csv)
    assert list(from_csv["prediction"]) == list(model.predict(frame.head(500)))

    missing = run_cli(server.url, "score", "no-such-model", str(lines), "-o", str(out_csv))
    assert missing.returncode == 4
    bad_ext = run_cli(server.url, "score", MODEL, str(lines), "-o", str(tmp_path / "x.xlsx"))
    assert bad_ext.returncode == 2
