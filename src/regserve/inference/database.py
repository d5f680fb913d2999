"""Inference tables in the state database (the PostgreSQL store's): the ``inference_rows``
table, one ``INSERT`` per batch and model, read newest first through its (model, timestamp)
index, retention by deleting rows older than its first day.

Text that PostgreSQL cannot hold is replaced as the Parquet files replace bytes that are not
UTF-8: a NUL character becomes U+FFFD (else one such body would fail its whole batch). A
failed write raises :class:`TableWriteError` naming the first line of the database's error
only: SQLAlchemy's own text quotes the statement's parameters, and PostgreSQL's context lines
the values, the callers' bodies, which an event must not show.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

from regserve.inference.reader import jsonable
from regserve.inference.rows import CapturedRow
from regserve.store import StateStore

__all__ = ["DatabaseTables", "TableWriteError", "to_record"]


class TableWriteError(Exception):
    """The database refused a batch of rows (the message: its own, first line only)."""


class DatabaseTables:
    """:class:`regserve.inference.storage.TableStorage` on the store's ``inference_rows``."""

    where = "the PostgreSQL store's table inference_rows"

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def write(self, model: str, day: dt.date, rows: Sequence[CapturedRow]) -> None:
        try:
            self._store.add_inference_rows([to_record(row) for row in rows])
        except Exception as error:  # SQLAlchemy's, or psycopg's own from COPY
            cause = error.orig if isinstance(error, DBAPIError) else error
            lines = str(cause).strip().splitlines() or [type(cause).__name__]
            raise TableWriteError(lines[0]) from None

    def read(self, model: str, since_ms: int | None, limit: int) -> list[dict[str, Any]]:
        since = _time(since_ms) if since_ms is not None else None
        return [jsonable(row) for row in self._store.inference_rows(model, since, limit)]

    def sweep(self, oldest: dt.date) -> int:
        start = dt.datetime.combine(oldest, dt.time(), dt.timezone.utc)
        return self._store.delete_inference_rows(start)


def to_record(row: CapturedRow) -> dict[str, Any]:
    """``row`` as the table's columns (those of the Parquet files)."""
    return {
        "request_id": _text(row.request_id),
        "timestamp": _time(row.time_ms),
        "model": _text(row.model),
        "version": _text(row.version),
        "ref": _text(row.ref),
        "route": _text(row.route) if row.route is not None else None,
        "shadow": row.shadow,
        "caller": _text(row.caller),
        "status_code": row.status_code,
        "latency_ms": round(row.latency_ms, 3),
        "content_type": _text(row.content_type) if row.content_type is not None else None,
        "request": _body(row.request),
        "request_truncated": row.request_truncated,
        "response": _body(row.response) if row.response is not None else None,
        "response_truncated": row.response_truncated,
    }


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


def _body(body: bytes) -> str:
    return _text(body.decode("utf-8", "replace"))


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd")
