"""A model's batching settings, read from its cluster config tags and passed to its workers.

- ``regserve.batching`` (default ``auto``): ``auto`` batches models of a row-wise flavor
  (sklearn, xgboost, lightgbm, catboost), ``on`` every model, ``off`` none;
- ``regserve.max_batch_size`` (default ``64``, 1 to 1024): most requests in one predict;
- ``regserve.max_batch_wait_ms`` (default ``0``, up to 1000): how long an idle worker holds a
  request back for others to join it (0: never; batches still form under load).

A tag with a value that does not parse is ignored (the default applies) and logged. Tags take
effect for workers started after the change (a new version, or a restart).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from regserve.backends.tags import bounded_number

__all__ = ["BATCHING_TAG", "MAX_BATCH_SIZE_TAG", "MAX_BATCH_WAIT_TAG", "BatchSettings"]

BATCHING_TAG = "regserve.batching"
MAX_BATCH_SIZE_TAG = "regserve.max_batch_size"
MAX_BATCH_WAIT_TAG = "regserve.max_batch_wait_ms"
_MODES = ("auto", "on", "off")
_LIMITS = {MAX_BATCH_SIZE_TAG: (1, 1024), MAX_BATCH_WAIT_TAG: (0, 1000)}

_log = logging.getLogger("regserve.supervisor")


@dataclass(frozen=True)
class BatchSettings:
    """How a model's workers batch concurrent requests (see the module doc for the tags)."""

    mode: str = "auto"
    max_batch_size: int = 64
    max_batch_wait_ms: float = 0.0

    @classmethod
    def from_tags(cls, tags: Iterable[tuple[str, str]]) -> BatchSettings:
        values = dict(tags)
        mode = values.get(BATCHING_TAG, cls.mode).strip().lower()
        if mode not in _MODES:
            _log.warning("ignoring %s=%r: expected one of %s", BATCHING_TAG, mode, _MODES)
            mode = cls.mode
        return cls(
            mode=mode,
            max_batch_size=int(_number(values, MAX_BATCH_SIZE_TAG, cls.max_batch_size)),
            max_batch_wait_ms=_number(values, MAX_BATCH_WAIT_TAG, cls.max_batch_wait_ms),
        )

    def worker_args(self) -> list[str]:
        """The ``python -m regserve.worker`` options that carry these settings."""
        return [
            "--batching", self.mode,
            "--max-batch-size", str(self.max_batch_size),
            "--max-batch-wait-ms", f"{self.max_batch_wait_ms:g}",
        ]  # fmt: skip


def _number(values: dict[str, str], tag: str, default: float) -> float:
    return bounded_number(values, tag, default, _LIMITS, _log)
