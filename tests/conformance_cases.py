"""Scoring requests for the iris model, sent to regserve and to `mlflow models serve` alike.

Each case is ``(case_id, content_type, body)``, plus ``diverges`` when regserve deliberately
answers differently because MLflow answers badly: then it holds the status regserve gives.
The table is data only; ``tests/support/conformance.py`` holds the comparison.
"""

from __future__ import annotations

import io
import json
from typing import NamedTuple

import pandas as pd

__all__ = ["CASES", "Case"]

JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
RECORDS = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]


class Case(NamedTuple):
    case_id: str
    content_type: str | None
    body: bytes
    diverges: int | None = None  # regserve's status where MLflow's answer is a bug


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode("utf-8")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


FRAME = pd.DataFrame(ROWS, columns=COLUMNS)
SPLIT = {"columns": COLUMNS, "data": ROWS}

CASES: list[Case] = [
    # --- JSON: the four input formats
    Case("split", JSON, _json({"dataframe_split": SPLIT})),
    Case("split-with-index", JSON, _json({"dataframe_split": {**SPLIT, "index": [7, 8, 9]}})),
    Case("records", JSON, _json({"dataframe_records": RECORDS})),
    Case("records-one", JSON, _json({"dataframe_records": RECORDS[:1]})),
    Case("records-empty", JSON, _json({"dataframe_records": []})),
    Case("instances-list-of-dicts", JSON, _json({"instances": RECORDS})),
    Case("instances-list-of-lists", JSON, _json({"instances": ROWS})),
    Case(
        "inputs-dict-of-lists",
        JSON,
        _json({"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}}),
    ),
    Case("inputs-list-of-dicts", JSON, _json({"inputs": RECORDS})),
    Case("inputs-list-of-lists", JSON, _json({"inputs": ROWS})),
    Case("inputs-scalar", JSON, _json({"inputs": 5})),
    Case(
        "ints-for-doubles",
        JSON,
        _json({"dataframe_records": [dict(zip(COLUMNS, [5, 3, 1, 0], strict=True))]}),
    ),
    Case("charset-utf8", JSON + "; charset=utf-8", _json({"dataframe_split": SPLIT})),
    Case("charset-UTF8-upper", JSON + "; charset=UTF-8", _json({"dataframe_split": SPLIT})),
    Case("unicode-column", JSON, _json({"dataframe_records": [{**RECORDS[0], "naïve_😀": "é"}]})),
    Case(
        "key-order-shuffled",
        JSON,
        _json({"dataframe_records": [dict(reversed(list(RECORDS[0].items())))]}),
    ),
    # --- JSON: params (the iris model has no params schema)
    Case("params-empty", JSON, _json({"dataframe_split": SPLIT, "params": {}})),
    Case("params-unknown", JSON, _json({"dataframe_split": SPLIT, "params": {"temperature": 0.5}})),
    Case("params-not-a-dict", JSON, _json({"dataframe_split": SPLIT, "params": [1, 2]})),
    # --- JSON: malformed
    Case("bad-json", JSON, b'{"dataframe_split": '),
    Case("empty-body-json", JSON, b""),
    Case("json-list-at-top", JSON, _json(RECORDS)),
    Case("json-number-at-top", JSON, b"42"),
    Case("json-null", JSON, b"null"),
    Case("json-string-not-object", JSON, _json("hello")),
    Case("no-format-key", JSON, _json({"data": ROWS})),
    Case("empty-object", JSON, b"{}"),
    Case("two-format-keys", JSON, _json({"dataframe_split": SPLIT, "instances": ROWS})),
    Case("llm-key-messages", JSON, _json({"messages": [{"role": "user", "content": "hi"}]})),
    Case("invalid-utf8-json", JSON, b'{"inputs": "\xff\xfe"}'),
    Case("utf16-json", JSON, _json({"dataframe_split": SPLIT}).decode().encode("utf-16")),
    # --- JSON: wrong content for the schema
    Case(
        "missing-column",
        JSON,
        _json({"dataframe_records": [{k: v for k, v in RECORDS[0].items() if k != "petal_width"}]}),
    ),
    Case("extra-column", JSON, _json({"dataframe_records": [{**RECORDS[0], "color": "red"}]})),
    Case(
        "wrong-type-string",
        JSON,
        _json({"dataframe_records": [{**RECORDS[0], "sepal_length": "long"}]}),
    ),
    Case(
        "numeric-string",
        JSON,
        _json({"dataframe_records": [{**RECORDS[0], "sepal_length": "5.1"}]}),
    ),
    Case("null-value", JSON, _json({"dataframe_records": [{**RECORDS[0], "sepal_length": None}]})),
    Case("nan-string", JSON, _json({"dataframe_records": [{**RECORDS[0], "sepal_length": "NaN"}]})),
    Case(
        "nan-literal",
        JSON,
        _json({"dataframe_split": {"columns": COLUMNS, "data": [[float("nan"), 3.5, 1.4, 0.2]]}}),
    ),
    Case("huge-float", JSON, _json({"dataframe_records": [{**RECORDS[0], "sepal_length": 1e308}]})),
    Case(
        "huge-int",
        JSON,
        _json(
            {"dataframe_records": [{**RECORDS[0], "sepal_length": 123456789012345678901234567890}]}
        ),
    ),
    Case(
        "bool-values",
        JSON,
        _json({"dataframe_records": [dict(zip(COLUMNS, [True, False, True, False], strict=True))]}),
    ),
    Case(
        "split-wrong-width",
        JSON,
        _json({"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2.0]]}}),
    ),
    Case("split-not-dict", JSON, _json({"dataframe_split": ROWS})),
    Case("records-not-list", JSON, _json({"dataframe_records": "rows"})),
    Case("records-of-scalars", JSON, _json({"dataframe_records": [1, 2, 3]})),
    Case("instances-ragged", JSON, _json({"instances": [[1.0, 2.0, 3.0, 4.0], [1.0]]})),
    Case("instances-wrong-width", JSON, _json({"instances": [[1.0, 2.0]]})),
    Case(
        "inputs-dict-ragged",
        JSON,
        _json({"inputs": {"sepal_length": [1.0, 2.0], "sepal_width": [1.0]}}),
    ),
    # --- CSV
    Case("csv", CSV, _csv(FRAME)),
    Case("csv-charset-utf8", CSV + "; charset=utf-8", _csv(FRAME)),
    Case("csv-header-only", CSV, ",".join(COLUMNS).encode() + b"\n"),
    Case("csv-empty", CSV, b""),
    Case(
        "csv-ragged", CSV, b"sepal_length,sepal_width,petal_length,petal_width\n1,2\n1,2,3,4,5,6\n"
    ),
    Case("csv-wrong-type", CSV, b"sepal_length,sepal_width,petal_length,petal_width\nabc,2,3,4\n"),
    Case("csv-missing-column", CSV, b"sepal_length,sepal_width,petal_length\n1,2,3\n"),
    Case(
        "csv-invalid-utf8", CSV, b"sepal_length,sepal_width,petal_length,petal_width\n\xff,2,3,4\n"
    ),
    # --- Parquet
    Case("parquet", PARQUET, _parquet(FRAME)),
    Case("parquet-corrupt", PARQUET, b"PAR1 this is not parquet"),
    Case("parquet-missing-column", PARQUET, _parquet(FRAME.drop(columns=["petal_width"]))),
    # --- content types
    Case("charset-latin1", JSON + "; charset=latin-1", _json({"dataframe_split": SPLIT})),
    Case("charset-quoted", JSON + '; charset="utf-8"', _json({"dataframe_split": SPLIT})),
    Case("format-pandas-split", JSON + "; format=pandas-split", _json({"dataframe_split": SPLIT})),
    Case("format-pandas-records", JSON + "; format=pandas-records", _json(RECORDS)),
    Case("csv-format-param", CSV + "; format=pandas-split", _csv(FRAME)),
    Case("trailing-semicolon", JSON + ";", _json({"dataframe_split": SPLIT})),
    Case("text-plain", "text/plain", _json({"dataframe_split": SPLIT})),
    Case("json-uppercase-type", "Application/JSON", _json({"dataframe_split": SPLIT})),
    Case("form-urlencoded", "application/x-www-form-urlencoded", b"a=1"),
    # --- deliberate divergences: MLflow answers these badly
    Case("no-content-type", None, _json({"dataframe_split": SPLIT}), diverges=415),
    Case("double-encoded-json", JSON, _json(json.dumps({"dataframe_split": SPLIT})), diverges=200),
]
