"""How large an input a worker parses: columns, rows, values and JSON nesting depth.

pandas and MLflow's schema checks cost far more per column than per byte (a 2.9 MB CSV of
300,000 columns kept a worker busy for 86 s), and a few bytes can ask for a huge frame (a CSV
header of 1,000 columns over 100,000 one-value lines is a 10^8-value frame of NaN). So each
request is measured *before* pandas sees it, by cheap scans in C (``bytes.count``, a regex, a
numpy cumulative sum) or on the JSON already decoded, and refused with a 400 when it is over a
limit. Each limit is a ``REGSERVE_MAX_INPUT_*`` / ``REGSERVE_MAX_JSON_DEPTH`` setting (0: none),
passed to the worker as arguments (``--max-input-columns`` ...), or in a shared worker's LOAD.

What is counted:

- CSV: columns in the header (its commas, quoted ones included, plus one), rows as the line
  breaks (an upper bound: quoted fields may hold line breaks), values as rows x columns (pandas
  fills short rows with NaN).
- JSON (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``): rows as the
  list's length (or, for a dict of columns, the longest column), columns as the longest row, or
  all the keys that the records name together; values as rows x columns. Nesting depth over
  the whole body (brackets outside strings).
- Parquet: rows and columns from the file's footer (read with pyarrow when the environment has
  it; pandas needs it or fastparquet anyway); after reading otherwise.

Standard library, numpy (and pyarrow when present) only: this runs in model environments.
The checks are cheap beside the request (a 256-row ``dataframe_split``: about 20 us, where
orjson takes 30 us and the whole request about 4 ms on this 2-core machine).
"""

from __future__ import annotations

import argparse
import io
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["FRAME_KEYS", "InputLimits"]

FRAME_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
"""The JSON fields MLflow turns into a DataFrame or tensors."""

_NOT_QUOTES_NOR_BRACKETS = bytes(b for b in range(256) if b not in b'"[]{}')
# The first CSV record: quoted fields may hold commas and line breaks.
_CSV_HEADER = re.compile(rb'[^"\n\r]*(?:"[^"]*"[^"\n\r]*)*')
_DEPTH_CHUNK = 1 << 20
_OPTIONS = (
    ("--max-input-columns", "max_columns", "columns"),
    ("--max-input-rows", "max_rows", "rows"),
    ("--max-input-values", "max_values", "values (rows x columns)"),
    ("--max-json-depth", "max_depth", "levels of JSON nesting"),
)


@dataclass(frozen=True)
class InputLimits:
    """The largest input one request may bring (0: no limit). Defaults as in Settings."""

    max_columns: int = 10_000
    max_rows: int = 1_000_000
    max_values: int = 10_000_000
    max_depth: int = 64

    # -- carrying them to a worker ----------------------------------------------------------

    def worker_args(self) -> list[str]:
        """The ``python -m regserve.worker`` options that carry these limits."""
        return [arg for option, field, _ in _OPTIONS for arg in (option, str(getattr(self, field)))]

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        default = InputLimits()
        for option, field, what in _OPTIONS:
            parser.add_argument(
                option,
                type=int,
                default=getattr(default, field),
                help=f"most {what} in one request's input (400 above; 0: no limit)",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> InputLimits:
        return cls(
            **{field: getattr(args, option[2:].replace("-", "_")) for option, field, _ in _OPTIONS}
        )

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> InputLimits:
        """From :meth:`to_json`'s dict; the defaults for what it lacks (an older supervisor)."""
        if not isinstance(value, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in value.items() if k in known})

    # -- measuring inputs: each returns what is wrong, or None ------------------------------

    def csv_problem(self, body: bytes) -> str | None:
        header = _CSV_HEADER.match(body)
        columns = (header.group() if header else b"").count(b",") + 1
        lines = body.count(b"\n") + body.count(b"\r") - body.count(b"\r\n")
        if body and not body.endswith((b"\n", b"\r")):
            lines += 1
        rows = max(lines - 1, 0)  # the header is a line
        return self.frame_problem(rows, columns, "CSV input", "counted by line breaks")

    def json_problem(self, body: bytes, decoded: Any) -> str | None:
        """``decoded`` is ``body`` decoded (a JSON object, or for MLflow 1.x also a list)."""
        problem = self.depth_problem(body)
        if problem is not None:
            return problem
        if isinstance(decoded, list):  # MLflow 1.x: records at the top
            return self.frame_problem(*_list_shape(decoded, self.max_rows), "JSON input")
        if not isinstance(decoded, dict):
            return None
        if "data" in decoded and "columns" in decoded:  # MLflow 1.x: split at the top
            return self.frame_problem(*_split_shape(decoded, self.max_rows), "JSON input")
        for key in FRAME_KEYS:
            if key in decoded:
                rows, columns = _shape(key, decoded[key], self.max_rows)
                problem = self.frame_problem(rows, columns, f"'{key}'")
                if problem is not None:
                    return problem
        return None

    def depth_problem(self, body: bytes) -> str | None:
        """``body`` is valid JSON (it was decoded): its strings are closed."""
        limit = self.max_depth
        if not limit or body.count(b"[") + body.count(b"{") <= limit:
            return None
        brackets = _brackets_outside_strings(body)
        depth = _json_depth(brackets) if len(brackets) > limit else 0
        if depth <= limit:
            return None
        return (
            f"The JSON input is nested {depth:,} levels deep; this server accepts at most "
            f"{limit:,} levels (REGSERVE_MAX_JSON_DEPTH)."
        )

    def parquet_problem(self, body: bytes) -> str | None:
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pandas reads it with fastparquet: checked once read
            return None
        try:
            metadata = pq.ParquetFile(io.BytesIO(body)).metadata
        except Exception:
            return None  # not Parquet: pandas says so in MLflow's words
        return self.frame_problem(metadata.num_rows, metadata.num_columns, "Parquet input")

    def frame_problem(self, rows: int, columns: int, what: str, how: str = "") -> str | None:
        """What is wrong with an input of ``rows`` x ``columns``, or None."""
        counted = f" ({how})" if how else ""
        if self.max_columns and columns > self.max_columns:
            return (
                f"The {what} has {columns:,} columns; this server accepts at most "
                f"{self.max_columns:,} (REGSERVE_MAX_INPUT_COLUMNS)."
            )
        if self.max_rows and rows > self.max_rows:
            return (
                f"The {what} has up to {rows:,} rows{counted}; this server accepts at most "
                f"{self.max_rows:,} per request (REGSERVE_MAX_INPUT_ROWS): split it into "
                "several requests."
            )
        if self.max_values and rows * columns > self.max_values:
            return (
                f"The {what} has up to {rows:,} rows{counted} of {columns:,} columns, "
                f"{rows * columns:,} values; this server accepts at most "
                f"{self.max_values:,} per request (REGSERVE_MAX_INPUT_VALUES): send fewer "
                "rows or columns per request."
            )
        return None


def _shape(key: str, value: Any, max_rows: int) -> tuple[int, int]:
    """(rows, columns) of one of the FRAME_KEYS fields, as far as they can be told cheaply."""
    if key == "dataframe_split":
        return _split_shape(value, max_rows) if isinstance(value, dict) else (0, 0)
    if isinstance(value, dict):  # a dict of columns (or of tensors)
        lengths = [len(v) for v in value.values() if isinstance(v, list)]
        return max(lengths, default=1), len(value)
    if isinstance(value, list):
        return _list_shape(value, max_rows)
    return 1, 1


def _split_shape(split: dict[str, Any], max_rows: int) -> tuple[int, int]:
    data, columns = split.get("data"), split.get("columns")
    rows, width = _list_shape(data, max_rows) if isinstance(data, list) else (0, 0)
    return rows, max(width, len(columns) if isinstance(columns, list) else 0)


def _list_shape(rows: list[Any], max_rows: int) -> tuple[int, int]:
    """(rows, columns) of a list of rows: lists (their longest), dicts (the keys they name
    together), scalars (one column)."""
    if max_rows and len(rows) > max_rows:
        return len(rows), 0  # refused for its rows: no need to look at them
    kinds = set(map(type, rows))
    width = 1 if kinds - {dict, list} else 0
    if dict in kinds:
        records = rows if kinds == {dict} else [r for r in rows if type(r) is dict]
        width = max(width, len(set().union(*records)))
    if list in kinds:
        lists = rows if kinds == {list} else [r for r in rows if type(r) is list]
        width = max(width, max(map(len, lists)))
    return len(rows), width


def _brackets_outside_strings(body: bytes) -> bytes:
    """The brackets of a valid JSON body that are not inside a string, in order.

    All in C, no object per string: escaped backslashes and quotes are dropped, then everything
    but quotes and brackets; a bracket is inside a string when an odd number of quotes precede
    it, which dropping two adjacent quotes does not change (most strings vanish that way).
    """
    if b"\x00" in body:  # UTF-16 or UTF-32, which the standard library's json reads
        body = body.decode(json.detect_encoding(body)).encode("utf-8", "surrogatepass")
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = body.translate(None, _NOT_QUOTES_NOR_BRACKETS).replace(b'""', b"")
    if b'"' not in kept:
        return kept
    return b"".join(kept.split(b'"')[::2])  # the parts between a string's quotes are dropped


def _json_depth(brackets: bytes) -> int:
    """The deepest nesting of a run of JSON brackets (``[{`` open, ``]}`` close)."""
    import numpy as np

    deepest = depth = 0
    for start in range(0, len(brackets), _DEPTH_CHUNK):
        chunk = np.frombuffer(brackets[start : start + _DEPTH_CHUNK], dtype=np.uint8)
        # "[" and "{" have bit 1 set, "]" and "}" do not: +1 and -1.
        steps = (chunk & 2).astype(np.int8) - 1
        walk = np.cumsum(steps, dtype=np.int64) + depth
        deepest = max(deepest, int(walk.max()))
        depth = int(walk[-1])
    return deepest
