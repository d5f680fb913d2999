"""One captured request (:class:`CapturedRow`), its Parquet schema, and where a model's rows lie.

Layout: ``<root>/<model>/date=YYYY-MM-DD/part-<epoch ms>-<random>.parquet`` (Hive-style: pandas,
DuckDB and Spark read ``<root>/<model>`` with a ``date`` column), the model's name
percent-encoded into one path segment, the date that of the request's arrival in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

import pyarrow as pa

__all__ = [
    "SCHEMA",
    "CapturedRow",
    "date_of",
    "model_dir",
    "model_of_dir",
    "partition_date",
    "partition_name",
    "tables_root",
    "to_table",
]

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("model", pa.string()),
        ("version", pa.string()),
        ("ref", pa.string()),
        ("route", pa.string()),
        ("shadow", pa.bool_()),
        ("caller", pa.string()),
        ("status_code", pa.int32()),
        ("latency_ms", pa.float64()),
        ("content_type", pa.string()),
        ("request", pa.string()),
        ("request_truncated", pa.bool_()),
        ("response", pa.string()),
        ("response_truncated", pa.bool_()),
    ]
)
"""The columns of every inference table file (docs/api.md describes each)."""

_PARTITION = "date="


class CapturedRow(NamedTuple):
    """A scoring request and its answer, as the gateway saw them (bodies already cut to the
    limit: ``*_truncated`` says whether they were). A tuple of plain values: the garbage
    collector stops tracking it at its first pass, however long it waits for the writer."""

    request_id: str
    time_ms: int
    model: str
    version: str
    """The version that answered; ``-`` when none did (e.g. a 404 for the ref)."""
    ref: str
    """The URL's ref (``*``: the split URL); a shadow's: the traffic config's shadow ref."""
    route: str | None
    """The traffic config's ref drawn for a split-URL request; None otherwise."""
    shadow: bool
    caller: str
    status_code: int | None
    """None: no answer (a shadow copy that failed)."""
    latency_ms: float
    content_type: str | None
    request: bytes
    request_truncated: bool
    response: bytes | None
    response_truncated: bool


def to_table(rows: Sequence[CapturedRow]) -> pa.Table:
    """``rows`` as a table of :data:`SCHEMA` (bodies as text; bytes that are not UTF-8 are
    replaced by U+FFFD), built column by column."""

    def text(body: bytes | None) -> str | None:
        return body.decode("utf-8", "replace") if body is not None else None

    columns: dict[str, list[Any]] = {
        "request_id": [r.request_id for r in rows],
        "timestamp": [r.time_ms for r in rows],
        "model": [r.model for r in rows],
        "version": [r.version for r in rows],
        "ref": [r.ref for r in rows],
        "route": [r.route for r in rows],
        "shadow": [r.shadow for r in rows],
        "caller": [r.caller for r in rows],
        "status_code": [r.status_code for r in rows],
        "latency_ms": [round(r.latency_ms, 3) for r in rows],
        "content_type": [r.content_type for r in rows],
        "request": [text(r.request) for r in rows],
        "request_truncated": [r.request_truncated for r in rows],
        "response": [text(r.response) for r in rows],
        "response_truncated": [r.response_truncated for r in rows],
    }
    arrays = [pa.array(columns[f.name], type=f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def date_of(time_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(time_ms / 1000, dt.timezone.utc).date()


def model_dir(root: Path, model: str) -> Path:
    """The model's folder: its name as one path segment (``/`` and a leading ``.`` encoded)."""
    segment = quote(model, safe=" -_@+,=")
    if segment.startswith("."):
        segment = "%2E" + segment[1:]
    return root / segment


def model_of_dir(path: Path) -> str:
    return unquote(path.name)


def partition_date(path: Path) -> dt.date | None:
    """The date of a ``date=YYYY-MM-DD`` folder; None for anything else."""
    if not path.name.startswith(_PARTITION):
        return None
    try:
        return dt.date.fromisoformat(path.name.removeprefix(_PARTITION))
    except ValueError:
        return None


def partition_name(day: dt.date) -> str:
    return f"{_PARTITION}{day.isoformat()}"


def tables_root(data_dir: Path) -> Path:
    """Where every model's inference table lies: ``<data-dir>/inference``."""
    return data_dir / "inference"
