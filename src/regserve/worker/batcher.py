"""Adaptive batching: concurrent requests that can be combined are predicted in one call.

Requests queue on the event loop. While a batch predicts, new requests wait; when it is done,
everything that waits (up to ``max_batch_size``) becomes the next batch, so batches grow with the
load by themselves and an idle worker answers a lone request at once. ``max_wait`` (default 0)
lets a lone request wait that long for company first.

Inside a batch (:func:`run_batch`, on a worker thread), requests are grouped by what makes them
combinable: the same format, the same columns with the same types, the same params. A group is
predicted once (so MLflow's schema enforcement runs once per group) and the predictions are
split back by row count. Everything else is answered alone, exactly as without batching:

- a request that fails to parse gets its own error and leaves the others alone;
- a group whose combined prediction fails is predicted again request by request, so one
  poisoned request never fails the others;
- a model whose predictions do not have one entry per input row cannot be split back: the group
  is predicted again request by request and the model is not batched any more.

Two ways into a group. JSON ``dataframe_records`` / ``dataframe_split`` (without ``index``) bodies
whose every column holds one JSON type (float, int, str or bool), and plain CSV bodies whose
header names exactly the columns of the model's schema (so pandas infers no type), are merged
*before* pandas sees them: their rows are concatenated and parsed once by MLflow's own function,
which is most of the saving for small requests. Any other request is parsed alone; those whose
input is a DataFrame with a default index are concatenated with the others of the same columns
and dtypes.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from regserve.worker import compat, protocol, wire
from regserve.worker.limits import InputLimits

__all__ = ["BATCHING_MODES", "ROW_WISE_FLAVORS", "BatchRunner", "Batcher", "batchable_by_default"]

_logger = logging.getLogger("regserve.worker")

BATCHING_MODES = ("auto", "on", "off")
# Flavors whose predict maps each input row to its own output row, whatever else is in the call.
# A custom pyfunc may not (it sees the whole input), so "auto" batches only these.
ROW_WISE_FLAVORS = frozenset({"sklearn", "xgboost", "lightgbm", "catboost"})
_INT64 = (-(2**63), 2**63)
_JSON_TYPES = (float, int, str, bool)
_FAST_KEYS = ({"dataframe_records"}, {"dataframe_split"})


def batchable_by_default(model: Any) -> bool:
    """Whether ``auto`` batches this model: its flavors include a row-wise one."""
    flavors = getattr(model.metadata, "flavors", None) or {}
    return bool(ROW_WISE_FLAVORS.intersection(flavors))


@dataclass
class _Item:
    """One request of a batch and what is known about it so far."""

    body: bytes
    content_type: str | None
    response: wire.Response | None = None
    parsed: protocol.ParsedRequest | None = None
    rows: list[Any] = field(default_factory=list)  # raw JSON rows (fast path)


@dataclass
class _Group:
    key: tuple[Any, ...]
    items: list[_Item]
    params: dict[str, Any] | None


class BatchRunner:
    """Answers a batch of requests for one model (called on a worker thread)."""

    def __init__(
        self, model: Any, input_schema: Any, limits: InputLimits = protocol.DEFAULT_LIMITS
    ) -> None:
        self.model = model
        self.input_schema = input_schema
        self.limits = limits
        self.splittable = True
        self.combined_predicts = 0  # predict calls that served several requests
        self._fast_json = not _signature_from_type_hint(model.metadata)
        # CSV rows merge only when the schema types every column (pandas infers nothing).
        names = input_schema.input_names() if input_schema is not None else None
        self._csv_columns = frozenset(names) if names and input_schema.has_input_names() else None

    def run(self, requests: Sequence[tuple[bytes, str | None]]) -> list[wire.Response]:
        if len(requests) == 1 or not self.splittable:
            return [self._alone(_Item(b, ct)) for b, ct in requests]
        items = [_Item(body, ct) for body, ct in requests]
        groups: dict[tuple[Any, ...], _Group] = {}
        for item in items:
            key, params = self._prepare(item)
            if key is None:
                continue
            group = groups.setdefault(key, _Group(key, [], params))
            group.items.append(item)
        for group in groups.values():
            self._predict_group(group)
        return [item.response or _BATCH_FAILED for item in items]

    # -- one request -------------------------------------------------------------------------

    def _alone(self, item: _Item) -> wire.Response:
        if item.parsed is None:
            return protocol.handle(
                item.body, item.content_type, self.model, self.input_schema, self.limits
            )
        try:
            predictions = protocol.predict(self.model, item.parsed)
            body = protocol.serialize(predictions, item.parsed.unwrapped)
        except Exception as e:
            return protocol.failure(e, during="predict")
        return wire.Response(200, protocol.JSON_CONTENT_TYPE, body)

    def _prepare(self, item: _Item) -> tuple[tuple[Any, ...] | None, dict[str, Any] | None]:
        """The item's group key and params; None when it is answered (or to be) on its own."""
        try:
            if self._fast_json:
                fast = _json_rows_key(item, self.limits)
                if fast is not None:
                    return fast
            if self._csv_columns is not None:
                csv_key = _csv_rows_key(item, self._csv_columns, self.limits)
                if csv_key is not None:
                    return csv_key, None
            item.parsed = protocol.parse(
                item.body, item.content_type, self.model, self.input_schema, self.limits
            )
        except Exception as e:
            item.response = protocol.failure(e, during="parse")
            return None, None
        key = _frame_key(item.parsed)
        if key is None:
            item.response = self._alone(item)
        return key, item.parsed.params

    # -- one group ---------------------------------------------------------------------------

    def _predict_group(self, group: _Group) -> None:
        items = group.items
        if len(items) == 1 and items[0].parsed is not None:
            items[0].response = self._alone(items[0])
            return
        try:
            data = self._combine(group)
            combined = protocol.ParsedRequest(data, group.params, False)
            predictions = protocol.predict(self.model, combined)
            self.combined_predicts += 1
        except Exception:
            # One of them is poisoned (or the rows do not combine): each on its own.
            self._each_alone(items)
            return
        counts = [_row_count(item) for item in items]
        pieces = _split(predictions, counts)
        if pieces is None:
            _logger.warning(
                "the model's predictions (%s) do not have one entry per input row: "
                "it is not batched any more",
                type(predictions).__name__,
            )
            self.splittable = False
            self._each_alone(items)
            return
        for item, piece in zip(items, pieces, strict=True):
            try:
                item.response = wire.Response(
                    200, protocol.JSON_CONTENT_TYPE, protocol.serialize(piece, False)
                )
            except Exception as e:
                item.response = protocol.failure(e, during="predict")

    def _combine(self, group: _Group) -> Any:
        import pandas as pd

        first = group.items[0]
        if first.parsed is not None:
            frames = [item.parsed.data for item in group.items if item.parsed is not None]
            return pd.concat(frames, ignore_index=True)
        rows = [row for item in group.items for row in item.rows]
        if group.key[0] == "csv":
            text = "\n".join([group.key[1], *rows, ""])
            return compat.parse_csv_input(csv_input=io.StringIO(text), schema=self.input_schema)
        if group.key[0] == "dataframe_records":
            return compat.dataframe_from_parsed_json(rows, "records", self.input_schema)
        split = {"columns": list(group.key[1]), "data": rows}
        return compat.dataframe_from_parsed_json(split, "split", self.input_schema)

    def _each_alone(self, items: list[_Item]) -> None:
        for item in items:
            item.response = self._alone(item)


def _signature_from_type_hint(metadata: Any) -> bool:
    check = getattr(metadata, "_is_signature_from_type_hint", None)
    return bool(check()) if callable(check) else False


def _json_rows_key(
    item: _Item, limits: InputLimits
) -> tuple[tuple[Any, ...], dict[str, Any] | None] | None:
    """For a plain JSON DataFrame body whose columns each hold one JSON type: its group key.

    The key holds the format, the columns and each column's Python type, and the params; the
    rows are kept on the item. None when the body is anything else (it is then parsed alone);
    a ScoringError when it is over ``limits``.
    """
    try:
        mime = protocol.check_content_type(item.content_type)
    except protocol.ScoringError:
        return None
    if mime != compat.CONTENT_TYPE_JSON:
        return None
    decoded = protocol.decode_json(item.body, limits)
    if not isinstance(decoded, dict):
        return None
    params = decoded.get("params")
    keys = set(decoded).difference({"params"})
    if keys not in _FAST_KEYS or not (params is None or isinstance(params, dict)):
        return None
    fmt = keys.pop()
    inputs = decoded[fmt]
    found = _records_types(inputs) if fmt == "dataframe_records" else _split_types(inputs)
    if found is None:
        return None
    columns, types, rows = found
    item.rows = rows
    params_key = None if params is None else protocol.canonical_json(params)
    return (fmt, columns, types, params_key), params


def _csv_rows_key(
    item: _Item, schema_columns: frozenset[str], limits: InputLimits
) -> tuple[Any, ...] | None:
    """For a plain CSV body whose header names exactly the schema's columns: its group key.

    Plain: UTF-8, no quotes, no carriage returns, no blank lines, every row with as many fields
    as the header, so that each line is one row wherever it is parsed. The lines are kept.
    A ScoringError when the body is over ``limits``.
    """
    try:
        mime = protocol.check_content_type(item.content_type)
    except protocol.ScoringError:
        return None
    if mime != compat.CONTENT_TYPE_CSV:
        return None
    protocol.check_limit(limits.csv_problem(item.body))
    try:
        text = item.body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if '"' in text or "\r" in text:
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) < 2:
        return None
    header = lines[0]
    columns = header.split(",")
    if len(columns) != len(schema_columns) or set(columns) != schema_columns:
        return None
    commas = len(columns) - 1
    for line in lines[1:]:
        if line.count(",") != commas or not line.strip():
            return None
    item.rows = lines[1:]
    return ("csv", header)


def _records_types(records: Any) -> tuple[tuple[str, ...], tuple[type, ...], list[Any]] | None:
    if not isinstance(records, list) or not records or not isinstance(records[0], dict):
        return None
    columns = tuple(records[0])
    types = tuple(type(v) for v in records[0].values())
    for record in records:
        if not isinstance(record, dict) or tuple(record) != columns:
            return None
        if tuple(type(v) for v in record.values()) != types:
            return None
    if not _plain(types, [list(r.values()) for r in records]):
        return None
    return columns, types, records


def _split_types(split: Any) -> tuple[tuple[str, ...], tuple[type, ...], list[Any]] | None:
    if not isinstance(split, dict) or set(split) != {"columns", "data"}:
        return None
    columns, data = split["columns"], split["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        return None
    if len(set(columns)) != len(columns) or not isinstance(data, list) or not data:
        return None
    if not isinstance(data[0], list) or len(data[0]) != len(columns):
        return None
    types = tuple(type(v) for v in data[0])
    for row in data:
        if not isinstance(row, list) or tuple(type(v) for v in row) != types:
            return None
    if not _plain(types, data):
        return None
    return tuple(columns), types, data


def _plain(types: tuple[type, ...], rows: list[list[Any]]) -> bool:
    """Only scalar JSON types, and integers pandas keeps as int64 whatever they are next to."""
    if not all(t in _JSON_TYPES for t in types):
        return False
    int_columns = [i for i, t in enumerate(types) if t is int]
    low, high = _INT64
    return all(low <= row[i] < high for row in rows for i in int_columns)


def _frame_key(parsed: protocol.ParsedRequest) -> tuple[Any, ...] | None:
    """A parsed DataFrame with a default index and plain dtypes combines with its likes."""
    import pandas as pd

    data = parsed.data
    if parsed.unwrapped or not isinstance(data, pd.DataFrame) or len(data) == 0:
        return None
    index = data.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        return None
    if not data.columns.is_unique:
        return None
    dtypes = tuple(str(dtype) for dtype in data.dtypes)
    if not all(getattr(dtype, "kind", "") in "biufcmMO" for dtype in data.dtypes):
        return None  # extension dtypes (categories, ...) may change when concatenated
    if any(isinstance(dtype, pd.CategoricalDtype) for dtype in data.dtypes):
        return None
    params_key = None if parsed.params is None else protocol.canonical_json(parsed.params)
    return ("frame", tuple(map(str, data.columns)), dtypes, params_key)


def _row_count(item: _Item) -> int:
    if item.parsed is not None:
        return len(item.parsed.data)
    return len(item.rows)


def _split(predictions: Any, counts: list[int]) -> list[Any] | None:
    """The predictions cut back into one piece per request, or None when they cannot be."""
    import numpy as np
    import pandas as pd

    total = sum(counts)
    if isinstance(predictions, (pd.DataFrame, pd.Series)):
        if len(predictions) != total:
            return None
        return [predictions.iloc[a:b].reset_index(drop=True) for a, b in _bounds(counts)]
    if isinstance(predictions, np.ndarray):
        if predictions.ndim == 0 or predictions.shape[0] != total:
            return None
        return [predictions[a:b] for a, b in _bounds(counts)]
    if isinstance(predictions, list) and len(predictions) == total:
        return [predictions[a:b] for a, b in _bounds(counts)]
    return None


def _bounds(counts: list[int]) -> list[tuple[int, int]]:
    bounds = []
    start = 0
    for count in counts:
        bounds.append((start, start + count))
        start += count
    return bounds


class Batcher:
    """Queues requests on the event loop and runs them in batches.

    ``run`` answers a batch: on ``executor`` (at most ``concurrency`` batches at once), or, when
    ``executor`` is None, on the event loop itself, one batch at a time. Requests that arrive
    meanwhile form the next batch (up to ``max_batch_size``). When no batch runs, a request
    waits at most ``max_wait`` seconds for others before it goes alone.
    """

    def __init__(
        self,
        run: Callable[[Sequence[tuple[bytes, str | None]]], list[wire.Response]],
        executor: Executor | None,
        *,
        max_batch_size: int,
        max_wait: float = 0.0,
        concurrency: int = 1,
    ) -> None:
        self._run = run
        self._executor = executor
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max(0.0, max_wait)
        self._concurrency = max(1, concurrency)
        self._queue: list[_Queued] = []
        self._running = 0
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0
        self.requests = 0
        self.batch_sizes: dict[int, int] = {}
        """Batch size -> batches of that size so far (reported in PONG for /metrics)."""

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return len(self._queue)

    def submit(self, content_type: str | None, body: bytes) -> asyncio.Future[wire.Response]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[wire.Response] = loop.create_future()
        self._queue.append((body, content_type, future))
        if not self._scheduled:
            # Dispatch once the loop has read everything else that arrived in this turn.
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return future

    def _dispatch(self) -> None:
        self._scheduled = False
        full = len(self._queue) >= self.max_batch_size
        if self._timer is not None:
            if not full:
                return  # still waiting for company
            self._timer.cancel()
            self._timer = None
        elif self.max_wait and self._running == 0 and not full and self._queue:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait, self._waited)
            return
        self._start_batches()

    def _waited(self) -> None:
        self._timer = None
        self._start_batches()

    def _start_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and self._running < self._concurrency:
            batch = self._queue[: self.max_batch_size]
            del self._queue[: self.max_batch_size]
            self.batches += 1
            self.requests += len(batch)
            self.batch_sizes[len(batch)] = self.batch_sizes.get(len(batch), 0) + 1
            requests = [(body, content_type) for body, content_type, _ in batch]
            if self._executor is None:
                self._run_inline(batch, requests)
                if self._queue:  # read, answer, then go on with what is left
                    loop.call_soon(self._start_batches)
                return
            self._running += 1
            work = loop.run_in_executor(self._executor, self._run, requests)
            work.add_done_callback(partial(self._finished, batch))

    def _run_inline(self, batch: list[_Queued], requests: list[tuple[bytes, str | None]]) -> None:
        try:
            responses = self._run(requests)
        except Exception:
            # run() answers every request itself; this is a last resort.
            _logger.exception("a batch failed")
            responses = [_BATCH_FAILED] * len(batch)
        self._deliver(batch, responses)

    def _finished(self, batch: list[_Queued], done: asyncio.Future[list[wire.Response]]) -> None:
        self._running -= 1
        if done.cancelled():
            responses = [_STOPPED] * len(batch)
        elif (error := done.exception()) is not None:
            _logger.error("a batch failed", exc_info=error)
            responses = [_BATCH_FAILED] * len(batch)
        else:
            responses = done.result()
        self._deliver(batch, responses)
        if self._queue and self._timer is None:
            self._start_batches()

    @staticmethod
    def _deliver(batch: list[_Queued], responses: list[wire.Response]) -> None:
        for (_, _, future), response in zip(batch, responses, strict=True):
            if not future.done():
                future.set_result(response)


_Queued = tuple[bytes, "str | None", "asyncio.Future[wire.Response]"]
_STOPPED = protocol.error_response(
    503, "TEMPORARILY_UNAVAILABLE", "The worker stopped before answering."
)
_BATCH_FAILED = protocol.error_response(500, "INTERNAL_ERROR", "The request failed.")
