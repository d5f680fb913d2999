"""The inference tables' writer: captured rows wait in a bounded queue and one background
thread writes them, in batches, to the tables' storage (:mod:`regserve.inference.storage`:
Parquet files, or the PostgreSQL store's table): every ``flush_seconds``, or at once when
``batch_rows`` wait.

Nothing here can fail a request: :meth:`TableWriter.offer` never blocks (a row over the
queue's bound is dropped and counted), and a write that fails (a full disk, a read-only
directory, a database that refuses it) is counted and reported through ``on_failure`` (at most
once a minute per model, with the rows lost since), then the writer goes on with the next
batch. The writer also deletes rows older than the retention (checked hourly).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from regserve.inference.rows import CapturedRow, date_of
from regserve.inference.storage import TableStorage
from regserve.metrics import CaptureMetrics

__all__ = ["FailureReport", "TableWriter", "WriterConfig"]

_log = logging.getLogger("regserve.inference")

_REPORT_EVERY = 60.0
"""Seconds at least between two failure reports of one model."""
_SWEEP_EVERY = 3600.0

FailureReport = Callable[[str, int, str], None]
"""``(model, rows lost since the last report, the error)``; called on the writer's thread."""


@dataclass(frozen=True)
class WriterConfig:
    queue_rows: int = 10000
    flush_seconds: float = 2.0
    retention_days: int = 30
    """Days kept, today (UTC) included; 0: keep every row."""
    batch_rows: int = 1000
    """Rows written at most at once; once this many wait, they are written at once."""


class TableWriter:
    """Writes captured rows off the hot path (see the module docstring)."""

    def __init__(
        self,
        config: WriterConfig,
        storage: TableStorage,
        metrics: CaptureMetrics,
        on_failure: FailureReport,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self.storage = storage
        self._metrics = metrics
        self._on_failure = on_failure
        self._clock = clock
        self._rows: deque[CapturedRow] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: defaultdict[str, int] = defaultdict(int)
        self._reported: dict[str, float] = {}
        self._swept = float("-inf")
        metrics.watch_queue(self._rows.__len__)

    def offer(self, row: CapturedRow) -> bool:
        """Queue ``row`` for writing; False (dropped, counted) when the queue is full. Called
        on the event loop only: an append, no lock, and the writer is woken only once a
        batch waits (waking a thread per request would cost the hot path its GIL)."""
        waiting = len(self._rows)
        if waiting >= self._config.queue_rows:
            self._metrics.dropped(row.model)
            return False
        self._rows.append(row)
        if waiting + 1 == self._config.batch_rows:
            self._wake.set()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inference-table", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.wait(self._config.flush_seconds)
            self._wake.clear()
            stopping = self._stopping.is_set()
            self._drain()
            self._sweep_if_due()
            if stopping:
                return

    def _drain(self) -> None:
        """Write every row queued now, in batches of at most ``batch_rows``."""
        while self._rows:
            batch: list[CapturedRow] = []
            while self._rows and len(batch) < self._config.batch_rows:
                batch.append(self._rows.popleft())
            self.write(batch)

    def write(self, rows: list[CapturedRow]) -> None:
        """Write ``rows``: one write per model and date; failures counted and reported."""
        groups: defaultdict[tuple[str, dt.date], list[CapturedRow]] = defaultdict(list)
        for row in rows:
            groups[(row.model, date_of(row.time_ms))].append(row)
        for (model, day), group in groups.items():
            try:
                self.storage.write(model, day, group)
            except Exception as error:  # a table that cannot be written must not stop others
                self._failed(model, len(group), error)
            else:
                self._metrics.written(model, len(group))

    def _failed(self, model: str, count: int, error: Exception) -> None:
        self._metrics.failed(model, count)
        self._lost[model] += count
        now = time.monotonic()
        if now - self._reported.get(model, float("-inf")) < _REPORT_EVERY:
            return
        self._reported[model] = now
        lost, self._lost[model] = self._lost[model], 0
        _log.warning("could not write %d inference table rows of %r: %s", lost, model, error)
        try:
            self._on_failure(model, lost, f"{type(error).__name__}: {error}")
        except Exception:  # the report (an event in the store) may fail as well
            _log.exception("could not report a failed inference table write")

    def _sweep_if_due(self) -> None:
        if self._config.retention_days <= 0:
            return
        now = time.monotonic()
        if now - self._swept >= _SWEEP_EVERY:
            self._swept = now
            try:
                self.sweep()
            except Exception:  # the next sweep tries again; the writer goes on
                _log.warning("could not delete old inference table rows", exc_info=True)

    def sweep(self) -> int:
        """Delete the rows older than the retention (see :meth:`TableStorage.sweep`)."""
        if self._config.retention_days <= 0:
            return 0
        today = dt.datetime.fromtimestamp(self._clock(), dt.timezone.utc).date()
        return self.storage.sweep(today - dt.timedelta(days=self._config.retention_days - 1))
