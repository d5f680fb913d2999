"""The inference tables' writer and reader in process, on real files: batches, partitions,
retention, truncation, and a directory that cannot be written (no exception, counted,
reported once); the read route's ``since``."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from regserve.errors import InvalidParameterError
from regserve.gateway.inference_tables import parse_since
from regserve.inference.capture import InferenceCapture, request_id_of
from regserve.inference.parquet import ParquetTables
from regserve.inference.reader import read_rows
from regserve.inference.rows import CapturedRow, model_dir
from regserve.inference.writer import TableWriter, WriterConfig
from regserve.metrics import CaptureMetrics

DAY = dt.datetime(2026, 12, 3, 12, tzinfo=dt.timezone.utc)
DAY_MS = int(DAY.timestamp() * 1000)
HOUR_MS = 3_600_000


def _row(model: str = "m", time_ms: int = DAY_MS, n: int = 0, **changes: object) -> CapturedRow:
    fields: dict[str, object] = {
        "request_id": f"r{n}",
        "time_ms": time_ms,
        "model": model,
        "version": "1",
        "ref": "Production",
        "route": None,
        "shadow": False,
        "caller": "alice",
        "status_code": 200,
        "latency_ms": 1.5,
        "content_type": "application/json",
        "request": b'{"inputs": [1]}',
        "request_truncated": False,
        "response": b'{"predictions": [1]}',
        "response_truncated": False,
    }
    fields.update(changes)
    return CapturedRow(**fields)  # type: ignore[arg-type]


class _Reports(list[tuple[str, int, str]]):
    def __call__(self, model: str, rows: int, error: str) -> None:
        self.append((model, rows, error))


def _writer(
    root: Path, reports: _Reports | None = None, **config: int | float
) -> tuple[TableWriter, CollectorRegistry]:
    registry = CollectorRegistry()
    writer = TableWriter(
        WriterConfig(**config),  # type: ignore[arg-type]
        ParquetTables(root, clock=lambda: DAY.timestamp()),
        CaptureMetrics(registry),
        reports if reports is not None else _Reports(),
        clock=lambda: DAY.timestamp(),
    )
    return writer, registry


def _rows_counted(registry: CollectorRegistry, model: str, outcome: str) -> float:
    value = registry.get_sample_value(
        "regserve_inference_table_rows_total", {"model": model, "outcome": outcome}
    )
    return value or 0.0


def test_rows_are_written_in_batches_by_model_and_date(tmp_path: Path) -> None:
    writer, registry = _writer(tmp_path, batch_rows=100, flush_seconds=30)
    for n in range(250):
        assert writer.offer(_row(n=n))
    writer.offer(_row("other/model", DAY_MS - 24 * HOUR_MS, n=999))
    writer.start()
    writer.stop()  # writes what is queued, in batches of at most 100 rows
    files = sorted((model_dir(tmp_path, "m") / "date=2026-12-03").glob("part-*.parquet"))
    assert [len(pd.read_parquet(f)) for f in files] == [100, 100, 50]
    assert _rows_counted(registry, "m", "written") == 250
    # a model name with a slash is one folder; the date partition is read back as a column
    other = pd.read_parquet(tmp_path / "other%2Fmodel")
    assert other["request_id"].tolist() == ["r999"]
    assert other["date"].astype(str).tolist() == ["2026-12-02"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_reader_returns_the_newest_rows_since_a_time(tmp_path: Path) -> None:
    writer, _ = _writer(tmp_path)
    writer.write([_row(time_ms=DAY_MS + n * HOUR_MS, n=n) for n in range(5)])
    writer.write([_row(time_ms=DAY_MS - 48 * HOUR_MS, n=9)])
    rows = read_rows(tmp_path, "m", None, 3)
    assert [r["request_id"] for r in rows] == ["r4", "r3", "r2"]
    assert rows[0]["timestamp"] == "2026-12-03T16:00:00.000Z"
    assert (rows[0]["request"], rows[0]["caller"]) == ('{"inputs": [1]}', "alice")
    since = read_rows(tmp_path, "m", DAY_MS + 3 * HOUR_MS, 100)
    assert [r["request_id"] for r in since] == ["r4", "r3"]
    assert len(read_rows(tmp_path, "m", None, 100)) == 6
    assert read_rows(tmp_path, "unknown", None, 10) == []


def test_bodies_over_the_limit_are_cut_and_marked(tmp_path: Path) -> None:
    writer, _ = _writer(tmp_path)
    capture = InferenceCapture(writer, max_body_bytes=8)
    request, request_cut = capture.cut(b"0123456789")
    response, response_cut = capture.cut(b"short")
    assert not response_cut
    writer.write([_row(request=request, request_truncated=request_cut, response=response)])
    [row] = read_rows(tmp_path, "m", None, 10)
    assert (row["request"], row["request_truncated"]) == ("01234567", True)
    assert (row["response"], row["response_truncated"]) == ("short", False)


def test_retention_deletes_only_partitions_older_than_its_days(tmp_path: Path) -> None:
    writer, _ = _writer(tmp_path, retention_days=2)
    for days_ago in (0, 1, 2, 30):
        writer.write([_row(time_ms=DAY_MS - days_ago * 24 * HOUR_MS)])
    assert writer.sweep() == 2
    kept = sorted(p.name for p in model_dir(tmp_path, "m").iterdir())
    assert kept == ["date=2026-12-02", "date=2026-12-03"]
    keep_all, _ = _writer(tmp_path, retention_days=0)
    assert keep_all.sweep() == 0


def test_a_directory_that_cannot_be_written_raises_nothing_counts_and_reports_once(
    tmp_path: Path,
) -> None:
    root = tmp_path / "inference"
    root.mkdir()
    # A file where the model's folder goes stops root too (a 0555 directory would not).
    (root / "m").write_text("in the way")
    os.chmod(root, 0o555)
    reports = _Reports()
    writer, registry = _writer(root, reports)
    writer.write([_row(n=1), _row(n=2)])
    writer.write([_row(n=3)])
    writer.write([_row("fine", n=4)])  # a writable table is not held up by a broken one
    os.chmod(root, 0o755)
    assert _rows_counted(registry, "m", "failed") == 3
    assert [(m, n) for m, n, _ in reports] == [("m", 2)]  # at most one report a minute
    assert "Error" in reports[0][2]
    assert _rows_counted(registry, "fine", "written") == 1


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    writer, registry = _writer(tmp_path, queue_rows=2)
    assert [writer.offer(_row()), writer.offer(_row())] == [True, True]
    assert not writer.offer(_row())
    assert _rows_counted(registry, "m", "dropped") == 1


def test_capture_samples_only_models_whose_tag_is_on() -> None:
    capture = InferenceCapture(None, 10)
    assert not capture.sampled("m")
    assert request_id_of(b"abc-123.X:y") == "abc-123.X:y"
    for bad in (b"", b"a b", b"x" * 129, "é".encode()):
        generated = request_id_of(bad)
        assert generated != bad.decode("latin-1")
        assert len(generated) == 32


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_rates_of_zero_and_one_are_exact(tmp_path: Path, rate: float) -> None:
    writer, _ = _writer(tmp_path)
    capture = InferenceCapture(writer, 10)
    capture._rates = {"m": rate} if rate else {}  # what load() sets from the tags
    assert [capture.sampled("m") for _ in range(50)] == [bool(rate)] * 50


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1764763200000", 1764763200000),
        ("2026-12-03", DAY_MS - 12 * HOUR_MS),
        ("2026-12-03T12:00:00Z", DAY_MS),
        ("2026-12-03T13:00:00+01:00", DAY_MS),
    ],
)
def test_since_is_epoch_ms_or_iso_8601(text: str, ms: int) -> None:
    assert parse_since(text) == ms


@pytest.mark.parametrize("text", ["yesterday", "999999999999999", "1969-12-31", "", "-5"])
def test_a_since_that_is_no_time_is_refused_with_examples(text: str) -> None:
    with pytest.raises(InvalidParameterError, match="ISO 8601"):
        parse_since(text)
