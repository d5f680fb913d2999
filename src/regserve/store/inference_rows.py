"""The store's half of the inference tables when they live in the database (PostgreSQL):
captured rows added in batches, read newest first, deleted past the retention.

A mixin of :class:`regserve.store.StateStore`, like the access half. Rows are plain dicts whose
keys are the columns of :class:`regserve.store.tables.InferenceRow` (the Parquet files' names).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from regserve.store.tables import InferenceRow

__all__ = ["CAPTURED_COLUMNS", "InferenceStoreMixin"]

_TABLE = InferenceRow.__table__
CAPTURED_COLUMNS = tuple(c.name for c in _TABLE.columns if c.name != "id")
"""A row's keys, in the order of the Parquet files' columns."""


class InferenceStoreMixin:
    """Captured scoring requests. Methods block."""

    def _session(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def add_inference_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (each with every key of :data:`CAPTURED_COLUMNS`) in one
        transaction: all are stored or none."""
        if not rows:
            return
        with self._session() as s:
            dialect = s.get_bind().dialect
            if (dialect.name, dialect.driver) == ("postgresql", "psycopg"):
                _copy(s, rows)
            else:
                s.execute(insert(InferenceRow), list(rows))

    def inference_rows(
        self, model: str, since: dt.datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` rows of ``model`` captured at or after ``since`` (None: any
        time), newest first; ``timestamp`` an aware datetime in UTC."""
        query = select(*(_TABLE.c[name] for name in CAPTURED_COLUMNS)).where(
            _TABLE.c.model == model
        )
        if since is not None:
            query = query.where(_TABLE.c.timestamp >= since)
        query = query.order_by(_TABLE.c.timestamp.desc(), _TABLE.c.id.desc()).limit(limit)
        with self._session() as s:
            found = [dict(row._mapping) for row in s.execute(query)]
        for row in found:
            row["timestamp"] = _utc(row["timestamp"])
        return found

    def delete_inference_rows(self, before: dt.datetime) -> int:
        """Delete every model's rows captured before ``before``; how many were deleted."""
        with self._session() as s:
            result = s.execute(delete(InferenceRow).where(InferenceRow.timestamp < before))
            return int(result.rowcount) if isinstance(result, CursorResult) else 0


def _copy(s: Session, rows: Sequence[dict[str, Any]]) -> None:
    """``rows`` through PostgreSQL's ``COPY`` on the session's connection (in its transaction):
    about three times the rows a second of an ``INSERT``, and psycopg's C code, not Python,
    turns the values into text (the writer's thread holds the GIL less, the scoring path
    waits less for it)."""
    from psycopg import sql  # only with this driver

    table = sql.Identifier(InferenceRow.__tablename__)
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in CAPTURED_COLUMNS)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(table, columns)
    connection = s.connection().connection.driver_connection
    if connection is None:  # a pooled connection always has its driver's
        raise RuntimeError("the database connection is closed")
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[name] for name in CAPTURED_COLUMNS])


def _utc(stamp: dt.datetime) -> dt.datetime:
    # SQLite keeps no offset: what it returns was written in UTC.
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.astimezone(dt.timezone.utc)
