"""Inference tables as Parquet files in the data dir (the SQLite store's; layout in
:mod:`regserve.inference.rows`): one file per batch, model and date, written whole or not at
all; retention by whole date partitions."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from regserve.inference.reader import read_rows
from regserve.inference.rows import (
    CapturedRow,
    model_dir,
    partition_date,
    partition_name,
    to_table,
)

__all__ = ["ParquetTables"]


class ParquetTables:
    """:class:`regserve.inference.storage.TableStorage` on files under ``root``."""

    where = "<data-dir>/inference"

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self._clock = clock
        self._written = 0

    def write(self, model: str, day: dt.date, rows: Sequence[CapturedRow]) -> None:
        folder = model_dir(self.root, model) / partition_name(day)
        folder.mkdir(parents=True, exist_ok=True)
        table = to_table(rows)
        self._written += 1  # names sort in the order written (readers read the newest first)
        stamp, count = int(self._clock() * 1000), self._written
        name = f"part-{stamp:013d}-{count:06d}-{uuid.uuid4().hex[:8]}.parquet"
        partial = folder / f".{name}.tmp"
        try:
            pq.write_table(table, partial)
            os.replace(partial, folder / name)  # readers see whole files only
        finally:
            partial.unlink(missing_ok=True)

    def read(self, model: str, since_ms: int | None, limit: int) -> list[dict[str, Any]]:
        return read_rows(self.root, model, since_ms, limit)

    def sweep(self, oldest: dt.date) -> int:
        if not self.root.is_dir():
            return 0
        deleted = 0
        for folder in self.root.glob("*/date=*"):
            day = partition_date(folder)
            if day is not None and day < oldest and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                deleted += 1
        return deleted
