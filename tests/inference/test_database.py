"""The inference tables in the PostgreSQL store, in process on the real server: rows the writer
stores are read back (from another store on the same database, as another gateway would) in
the same shape as from Parquet files; retention deletes old rows; a table that cannot be
written raises nothing, is counted and reported once, without the callers' bodies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from regserve.inference.database import DatabaseTables
from regserve.inference.parquet import ParquetTables
from regserve.inference.rows import CapturedRow
from regserve.inference.storage import TableStorage
from regserve.inference.writer import TableWriter, WriterConfig
from regserve.metrics import CaptureMetrics
from regserve.store import StateStore
from tests.inference.test_writer import DAY, DAY_MS, HOUR_MS, _Reports, _row, _rows_counted
from tests.support.postgres import fresh_database


@pytest.fixture(scope="module")
def pg_uri() -> Iterator[str]:
    yield from fresh_database("regserve_itables")


@pytest.fixture
def store(pg_uri: str) -> Iterator[StateStore]:
    s = StateStore(pg_uri)
    s.migrate()
    with s.connection() as c:
        c.execute(text("DELETE FROM inference_rows"))
        c.commit()
    yield s
    s.close()


def _writer(
    storage: TableStorage, reports: _Reports | None = None, **config: int
) -> tuple[TableWriter, CollectorRegistry]:
    registry = CollectorRegistry()
    writer = TableWriter(
        WriterConfig(**config),  # type: ignore[arg-type]
        storage,
        CaptureMetrics(registry),
        reports if reports is not None else _Reports(),
        clock=lambda: DAY.timestamp(),
    )
    return writer, registry


def _sample() -> list[CapturedRow]:
    rows = [_row(time_ms=DAY_MS + n * HOUR_MS, n=n) for n in range(4)]
    rows.append(
        _row(
            time_ms=DAY_MS + 5 * HOUR_MS,
            n=5,
            ref="*",
            route="Staging",
            status_code=None,
            response=None,
            shadow=True,
            request=b"\xff\xfe cut",
            request_truncated=True,
        )
    )
    rows.append(_row("other", DAY_MS, n=9))
    return rows


def test_rows_are_read_back_by_another_store_as_parquet_reads_them(
    store: StateStore, pg_uri: str, tmp_path: Path
) -> None:
    writer, registry = _writer(DatabaseTables(store), batch_rows=2, flush_seconds=30)
    for row in _sample():
        assert writer.offer(row)
    writer.start()
    writer.stop()  # writes what is queued, in batches of at most 2 rows
    assert _rows_counted(registry, "m", "written") == 5
    files, _ = _writer(ParquetTables(tmp_path))
    files.write(_sample())
    other_gateway = StateStore(pg_uri)
    try:
        tables = DatabaseTables(other_gateway)
        for since, limit in ((None, 100), (None, 3), (DAY_MS + 2 * HOUR_MS, 100)):
            got = tables.read("m", since, limit)
            assert got == files.storage.read("m", since, limit), (since, limit)
        newest = tables.read("m", None, 1)[0]
        assert newest["timestamp"] == "2026-12-03T17:00:00.000Z"
        assert (newest["request"], newest["request_truncated"]) == ("\ufffd\ufffd cut", True)
        assert (newest["status_code"], newest["response"], newest["shadow"]) == (None, None, True)
        assert [r["request_id"] for r in tables.read("other", None, 10)] == ["r9"]
        assert tables.read("unknown", None, 10) == []
    finally:
        other_gateway.close()


def test_a_nul_in_a_body_is_replaced_not_a_failed_batch(store: StateStore) -> None:
    writer, registry = _writer(DatabaseTables(store))
    writer.write([_row(request=b'{"a": "\x00"}', response=b"\x00", n=1), _row(n=2)])
    assert _rows_counted(registry, "m", "written") == 2
    rows = DatabaseTables(store).read("m", None, 10)
    assert [r["request"] for r in rows if r["request_id"] == "r1"] == ['{"a": "\ufffd"}']


def test_retention_deletes_only_rows_older_than_its_days(store: StateStore) -> None:
    writer, _ = _writer(DatabaseTables(store), retention_days=2)
    first = DAY_MS - 36 * HOUR_MS  # 2026-12-02 00:00 UTC: today and yesterday are kept
    for n, time_ms in enumerate((DAY_MS, first, first - 1, DAY_MS - 30 * 24 * HOUR_MS)):
        writer.write([_row(time_ms=time_ms, n=n)])
    writer.write([_row("other", first - HOUR_MS, n=9)])
    assert writer.sweep() == 3  # every model's rows
    assert [r["request_id"] for r in DatabaseTables(store).read("m", None, 10)] == ["r0", "r1"]
    assert DatabaseTables(store).read("other", None, 10) == []
    keep_all, _ = _writer(DatabaseTables(store), retention_days=0)
    assert keep_all.sweep() == 0


def test_a_table_that_cannot_be_written_raises_nothing_counts_and_reports_once(
    store: StateStore,
) -> None:
    reports = _Reports()
    writer, registry = _writer(DatabaseTables(store), reports)
    with store.connection() as c:
        c.execute(text("ALTER TABLE inference_rows RENAME TO inference_rows_away"))
        c.commit()
    try:
        writer.write([_row(n=1, request=b"secret-body"), _row(n=2)])
        writer.write([_row(n=3)])
    finally:
        with store.connection() as c:
            c.execute(text("ALTER TABLE inference_rows_away RENAME TO inference_rows"))
            c.commit()
    assert _rows_counted(registry, "m", "failed") == 3
    [(model, lost, error)] = reports  # at most one report a minute
    assert (model, lost) == ("m", 2)
    assert error.startswith("TableWriteError: "), error
    assert "inference_rows" in error
    for unsaid in ("secret-body", "INSERT"):  # no body, no SQL
        assert unsaid not in error
    writer.write([_row(n=4)])  # the table back: the writer goes on
    assert [r["request_id"] for r in DatabaseTables(store).read("m", None, 10)] == ["r4"]
