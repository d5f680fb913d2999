"""Reading a model's inference table back: its newest rows (since a time), as JSON-ready dicts.

Files are read newest first (their names start with the time they were written) until
``limit`` rows are found, so a read costs what it returns, not the table's size.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from regserve.inference.rows import date_of, model_dir, partition_date

__all__ = ["jsonable", "read_rows"]

_log = logging.getLogger("regserve.inference")


def read_rows(root: Path, model: str, since_ms: int | None, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of ``model`` captured at or after ``since_ms`` (None: any
    time), newest first; ``timestamp`` as ISO 8601 text in UTC."""
    rows: list[dict[str, Any]] = []
    for path in _files(model_dir(root, model), since_ms):
        try:
            table = pq.ParquetFile(path).read()
        except Exception as error:  # a damaged file must not hide the others
            _log.warning("skipping unreadable inference table file %s: %s", path, error)
            continue
        if since_ms is not None:
            since = dt.datetime.fromtimestamp(since_ms / 1000, dt.timezone.utc)
            table = table.filter(pc.greater_equal(table["timestamp"], since))
        rows.extend(table.to_pylist())
        if len(rows) >= limit:
            break
    rows.sort(key=lambda row: row["timestamp"], reverse=True)
    return [jsonable(row) for row in rows[:limit]]


def _files(folder: Path, since_ms: int | None) -> list[Path]:
    if not folder.is_dir():
        return []
    first = date_of(since_ms) if since_ms is not None else None
    days = []
    for partition in folder.iterdir():
        day = partition_date(partition)
        if day is not None and (first is None or day >= first):
            days.append((day, partition))
    files: list[Path] = []
    for _, partition in sorted(days, reverse=True):
        files.extend(sorted(partition.glob("part-*.parquet"), reverse=True))
    return files


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its ``timestamp`` (an aware datetime) as ISO 8601 text in UTC, to the
    millisecond."""
    stamp: dt.datetime = row["timestamp"]
    return {**row, "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
