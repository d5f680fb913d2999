"""One captured request (:class:`CapturedRow`), its Parquet schema, and where a model's rows lie.

Layout: ``<root>/<model>/date=YYYY-MM-DD/part-<epoch ms>-<random>.parquet`` (Hive-style: pandas,
DuckDB and Spark read ``<root>/<model>`` with a ``date`` column), the model's name
percent-encoded into one path segment, the date that of the request's arrival in UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
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
    "to_record",
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


@dataclass(frozen=True)
class CapturedRow:
    """A scoring request and its answer, as the gateway saw them (bodies already cut to the
    limit: ``*_truncated`` says whether they were)."""

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


def to_record(row: CapturedRow) -> dict[str, object]:
    """``row`` as :data:`SCHEMA`'s columns (bodies as text; bytes that are not UTF-8 are
    replaced by U+FFFD)."""
    response = row.response.decode("utf-8", "replace") if row.response is not None else None
    return {
        "request_id": row.request_id,
        "timestamp": dt.datetime.fromtimestamp(row.time_ms / 1000, dt.timezone.utc),
        "model": row.model,
        "version": row.version,
        "ref": row.ref,
        "route": row.route,
        "shadow": row.shadow,
        "caller": row.caller,
        "status_code": row.status_code,
        "latency_ms": round(row.latency_ms, 3),
        "content_type": row.content_type,
        "request": row.request.decode("utf-8", "replace"),
        "request_truncated": row.request_truncated,
        "response": response,
        "response_truncated": row.response_truncated,
    }


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
