"""Where a gateway's inference tables lie: the one interface the writer, the read route (and
through it the CLI and the UI) use, and the choice by the store's dialect.

- SQLite store: Parquet files under ``<data-dir>/inference`` (:mod:`regserve.inference.parquet`).
- PostgreSQL store: the ``inference_rows`` table of that database
  (:mod:`regserve.inference.database`), so every gateway on it reads the rows any of them
  captured.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from regserve.inference.database import DatabaseTables
from regserve.inference.parquet import ParquetTables
from regserve.inference.rows import CapturedRow, tables_root
from regserve.settings import Settings
from regserve.store import StateStore

__all__ = ["TableStorage", "storage_for"]


class TableStorage(Protocol):
    """The inference tables' storage. Methods block (the writer's thread, or a route's)."""

    where: str
    """Where the rows go, as an operator reads it in an event."""

    def write(self, model: str, day: dt.date, rows: Sequence[CapturedRow]) -> None:
        """Store ``rows`` of ``model`` captured on ``day`` (UTC), all or none; raises on
        failure (the writer counts and reports it)."""

    def read(self, model: str, since_ms: int | None, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` rows of ``model`` captured at or after ``since_ms`` (None: any
        time), newest first, as JSON-ready dicts (keys: the Parquet schema's columns;
        ``timestamp`` as ISO 8601 text in UTC)."""

    def sweep(self, oldest: dt.date) -> int:
        """Delete every model's rows captured before ``oldest`` (UTC); how many partitions
        (Parquet) or rows (database) went."""


def storage_for(
    settings: Settings, store: StateStore, clock: Callable[[], float] | None = None
) -> TableStorage:
    """The database when the store is PostgreSQL, else Parquet in the data dir."""
    if store.dialect == "postgresql":
        return DatabaseTables(store)
    root = tables_root(settings.resolved_data_dir())
    return ParquetTables(root) if clock is None else ParquetTables(root, clock)
