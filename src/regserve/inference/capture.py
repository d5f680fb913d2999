"""The hot path's face of the inference tables: which models capture (and how much), request
ids, and rows handed to the writer without waiting.

Each model's sampling rate comes from its cluster config's tags
(:func:`regserve.backends.options.capture_rate`), read from the store by :meth:`follow` every
``interval`` seconds (and at once by :meth:`reload` when this gateway changes a config), so
every gateway on one database follows the same configs. The rates live in a plain dict the
scoring path reads without a lock (it is replaced whole).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import uuid
from collections.abc import Iterable

from regserve.backends.options import capture_rate
from regserve.errors import InvalidParameterError
from regserve.inference.rows import CapturedRow
from regserve.inference.writer import TableWriter
from regserve.store import EndpointRecord, StateStore

__all__ = ["InferenceCapture", "request_id_of"]

_log = logging.getLogger("regserve.inference")
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_of(header: bytes | None) -> str:
    """The caller's ``X-Request-Id`` when it is sane (1 to 128 letters, digits and ``._:-``),
    else a new one."""
    if header is not None:
        text = header.decode("latin-1")
        if _SANE_ID.fullmatch(text):
            return text
    return uuid.uuid4().hex


class InferenceCapture:
    """Decides which requests are captured and queues their rows (see the module doc)."""

    def __init__(self, writer: TableWriter | None, max_body_bytes: int) -> None:
        """``writer`` None: nothing is ever captured (a gateway built without tables)."""
        self._writer = writer
        self._max_body = max_body_bytes
        self._rates: dict[str, float] = {}

    def sampled(self, model: str) -> bool:
        """Whether to capture a request to ``model`` now (drawn at its sampling rate)."""
        rate = self._rates.get(model)
        return rate is not None and (rate >= 1.0 or random.random() < rate)

    def rate(self, model: str) -> float:
        return self._rates.get(model, 0.0)

    def load(self, endpoints: Iterable[EndpointRecord]) -> None:
        """Take the sampling rates of ``endpoints`` (served models only)."""
        rates: dict[str, float] = {}
        for endpoint in endpoints:
            if not endpoint.enabled:
                continue
            try:
                rate = capture_rate(endpoint.desired_config.tags)
            except InvalidParameterError as error:  # stored before the tag was checked
                _log.warning("inference table of %r stays off: %s", endpoint.model_name, error)
                continue
            if rate > 0 and self._writer is not None:
                rates[endpoint.model_name] = rate
        self._rates = rates

    async def reload(self, store: StateStore) -> None:
        self.load(await asyncio.to_thread(store.list_endpoints))

    async def follow(self, store: StateStore, interval: float) -> None:
        """Reload the rates every ``interval`` seconds, for ever."""
        while True:
            try:
                await self.reload(store)
            except Exception:  # the database away for a while: keep the last rates
                _log.warning("could not read the inference table settings", exc_info=True)
            await asyncio.sleep(interval)

    def cut(self, body: bytes) -> tuple[bytes, bool]:
        """``body`` within the row's limit, and whether it was cut."""
        if len(body) <= self._max_body:
            return body, False
        return body[: self._max_body], True

    def record(self, row: CapturedRow) -> None:
        """Queue ``row`` for the writer (never waits; dropped and counted when full)."""
        if self._writer is not None:
            self._writer.offer(row)
