"""Batch scoring: rows split into requests under the payload limit, sent several at once.

Each chunk of ``batch_size`` rows is encoded as MLflow's ``dataframe_split`` JSON (or ``inputs``
for arrays); a chunk whose encoding is over the payload limit is halved until it fits, and a
413 from the server halves it too and lowers the limit used for later chunks. Answers are put
back in input order whatever order they arrive in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from regserve.client.errors import BadRequestError, RequestTooLargeError, ServerError
from regserve.client.transport import RetryPolicy, Transport

__all__ = ["BatchScorer", "predictions_frame", "to_frame"]

ProgressCallback = Callable[[int], None]


def to_frame(data: Any, columns: Sequence[str] | None = None) -> tuple[pd.DataFrame, bool]:
    """``data`` as a frame, and whether to send it as ``inputs`` (a tensor) or by columns.

    An array is sent as ``inputs`` (what tensor-based models take) unless ``columns`` names
    its columns, for models whose signature has named columns.
    """
    if isinstance(data, pd.DataFrame):
        return data, False
    if isinstance(data, np.ndarray):
        if data.ndim > 2:
            raise BadRequestError("score() takes 1-D or 2-D arrays (one row per input)")
        flat = data.reshape(len(data), -1)
        if columns is not None:
            return pd.DataFrame(flat, columns=list(columns)), False
        return pd.DataFrame(flat), True
    if isinstance(data, Sequence) and all(isinstance(r, dict) for r in data):
        return pd.DataFrame.from_records(list(data)), False
    raise BadRequestError("score() takes a pandas DataFrame, a numpy array or a list of dicts")


@dataclass
class BatchScorer:
    """Scores one frame against one scoring path; see the module docstring."""

    transport: Transport
    path: str
    batch_size: int = 256
    concurrency: int = 4
    max_payload_bytes: int = 16 * 1024 * 1024
    params: dict[str, Any] | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_progress: ProgressCallback | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def score(self, frame: pd.DataFrame, as_array: bool = False) -> list[Any]:
        """One prediction per row of ``frame``, in its order."""
        if self.batch_size < 1 or self.concurrency < 1:
            raise BadRequestError("batch_size and concurrency must be at least 1")
        size = self.batch_size
        bounds = [(i, min(i + size, len(frame))) for i in range(0, len(frame), size)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            parts = pool.map(lambda b: self._score_rows(frame, b[0], b[1], as_array), bounds)
            return [p for part in parts for p in part]

    def _score_rows(self, frame: pd.DataFrame, start: int, stop: int, as_array: bool) -> list[Any]:
        body = _encode(frame.iloc[start:stop], as_array, self.params)
        if len(body) > self.max_payload_bytes and stop - start > 1:
            return self._halves(frame, start, stop, as_array)
        try:
            answer = self.transport.post_with_retries(
                self.path, body, "application/json", self.retry
            )
        except RequestTooLargeError:
            if stop - start == 1:
                raise
            with self._lock:  # later chunks are split before they are sent
                self.max_payload_bytes = min(self.max_payload_bytes, len(body) - 1)
            return self._halves(frame, start, stop, as_array)
        predictions = _rows_of(answer, stop - start)
        if self.on_progress is not None:
            self.on_progress(stop - start)
        return predictions

    def _halves(self, frame: pd.DataFrame, start: int, stop: int, as_array: bool) -> list[Any]:
        middle = (start + stop) // 2
        return [
            *self._score_rows(frame, start, middle, as_array),
            *self._score_rows(frame, middle, stop, as_array),
        ]


def _encode(chunk: pd.DataFrame, as_array: bool, params: dict[str, Any] | None) -> bytes:
    if as_array:
        body = b'{"inputs":' + orjson.dumps(
            np.ascontiguousarray(chunk.to_numpy()), option=orjson.OPT_SERIALIZE_NUMPY
        )
    else:
        # pandas writes NaN as null, timestamps as ISO strings, numpy scalars natively.
        split = chunk.to_json(orient="split", index=False, date_format="iso")
        body = b'{"dataframe_split":' + split.encode()
    if params:
        body += b',"params":' + orjson.dumps(params)
    return body + b"}"


def _rows_of(answer: dict[str, Any], expected: int) -> list[Any]:
    predictions = answer.get("predictions", answer)
    if isinstance(predictions, dict):  # column-oriented output: one list per output column
        predictions = pd.DataFrame(predictions).to_dict(orient="records")
    if not isinstance(predictions, list) or len(predictions) != expected:
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise ServerError(f"expected {expected} predictions, got {got}")
    return predictions


def predictions_frame(predictions: list[Any], index: pd.Index) -> pd.DataFrame:
    """Predictions as a frame on ``index``: a ``prediction`` column, or one per output field."""
    if predictions and all(isinstance(p, dict) for p in predictions):
        return pd.DataFrame.from_records(predictions, index=index)
    return pd.DataFrame({"prediction": predictions}, index=index)
