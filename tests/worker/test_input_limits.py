"""What a worker measures before pandas parses an input, and how messages quote input."""

from __future__ import annotations

import argparse
import io
import json

import pandas as pd
import pytest

from regserve.worker.limits import InputLimits
from regserve.worker.text import bounded_message, excerpt, log_safe

LIMITS = InputLimits(max_columns=10, max_rows=100, max_values=500, max_depth=8)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"a,b,c\n1,2,3\n", None),
        (b"a,b,c\r\n1,2,3\r\n" * 1, None),
        (b",".join(b"c%d" % i for i in range(11)) + b"\n", "11 columns"),
        (b'"a,b,c,d,e,f,g,h,i,j,k"\n1\n', "11 columns"),  # quoted commas count: an upper bound
        (b'"a\nb",c\n', None),  # a quoted line break is inside the header
        (b"a\n" + b"1\n" * 101, "up to 101 rows"),
        (b"a\r" + b"1\r" * 100, None),
        (b"a\r" + b"1\r" * 101, "up to 101 rows"),
        (b"a\n" + b"1\n" * 100, None),
        (b"a\n" + b"1\n" * 99 + b"1", None),  # no final line break
        (b",".join(b"c%d" % i for i in range(10)) + b"\n" + b"1\n" * 51, "510 values"),
        (b"", None),
    ],
)
def test_csv_is_measured_by_its_header_and_line_breaks(body: bytes, problem: str | None) -> None:
    found = LIMITS.csv_problem(body)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found, found


@pytest.mark.parametrize(
    ("decoded", "problem"),
    [
        ({"dataframe_split": {"columns": list("abc"), "data": [[1, 2, 3]] * 100}}, None),
        ({"dataframe_split": {"columns": list("abc"), "data": [[1, 2, 3]] * 101}}, "101 rows"),
        ({"dataframe_split": {"columns": [str(i) for i in range(11)], "data": []}}, "11 columns"),
        ({"dataframe_split": {"data": [[1] * 11]}}, "11 columns"),
        ({"dataframe_records": [{f"k{i}": 1} for i in range(11)]}, "11 columns"),  # sparse keys
        ({"dataframe_records": [{"a": 1, "b": 2}] * 100}, None),
        ({"dataframe_records": [{str(i): 1 for i in range(10)}] * 51}, "510 values"),
        ({"instances": [[1] * 10] * 50}, None),
        ({"instances": [1, [1] * 11, {"a": 1}]}, "11 columns"),  # mixed rows
        ({"inputs": {str(i): [1] for i in range(11)}}, "11 columns"),
        ({"inputs": {"a": [1] * 101}}, "101 rows"),
        ({"inputs": "text"}, None),
        ({"messages": [{"role": "user", "content": "hi"}] * 1000}, None),  # not a frame
        ([{"a": 1}] * 101, "101 rows"),  # MLflow 1.x: records at the top
        ({"columns": ["a"] * 11, "data": []}, "11 columns"),  # MLflow 1.x: split at the top
    ],
)
def test_json_frames_are_measured_before_pandas(decoded: object, problem: str | None) -> None:
    body = json.dumps(decoded).encode()
    found = LIMITS.json_problem(body, decoded)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found, found


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b'{"a": [[[[[[[1]]]]]]]}', None),  # 8 levels
        (b'{"a": [[[[[[[[1]]]]]]]]}', 9),
        (b'{"a": "[[[[[[[[[[[[[[[[[["}', None),  # inside a string
        (b'{"a": "\\"[[[[[[[[[[[[[[[[[[", "b": [1]}', None),  # an escaped quote does not end it
        (b'{"a": ' + b"[{}]," * 1000 + b"}", None),  # many brackets, shallow
        (b"[" * 5000 + b"]" * 5000, 5000),
    ],
)
def test_json_depth_counts_brackets_outside_strings(body: bytes, depth: int | None) -> None:
    found = LIMITS.depth_problem(body)
    if depth is None:
        assert found is None
    else:
        assert found is not None
        assert f"nested {depth:,} levels" in found


def test_parquet_is_measured_by_its_footer() -> None:
    buffer = io.BytesIO()
    pd.DataFrame({str(i): [1.0] * 3 for i in range(11)}).to_parquet(buffer)
    found = LIMITS.parquet_problem(buffer.getvalue())
    assert found is not None
    assert "11 columns" in found
    assert LIMITS.parquet_problem(b"PAR1 not parquet") is None  # pandas says so itself


def test_zero_means_no_limit() -> None:
    free = InputLimits(0, 0, 0, 0)
    assert free.csv_problem(b",".join([b"c"] * 50_000) + b"\n" + b"1\n" * 10) is None
    assert free.depth_problem(b"[" * 10_000 + b"]" * 10_000) is None


def test_limits_travel_as_arguments_and_as_json() -> None:
    parser = argparse.ArgumentParser()
    InputLimits.add_arguments(parser)
    assert InputLimits.from_args(parser.parse_args(LIMITS.worker_args())) == LIMITS
    assert InputLimits.from_args(parser.parse_args([])) == InputLimits()
    assert InputLimits.from_json(json.loads(json.dumps(LIMITS.to_json()))) == LIMITS
    assert InputLimits.from_json(None) == InputLimits()  # a LOAD from an older supervisor


def test_quotes_and_messages_are_cut_and_say_so() -> None:
    assert excerpt("short") == "short"
    assert excerpt("x" * 5000, 100) == "x" * 100 + "... (cut at 100 characters)"
    message = "Failed to predict data '" + "x" * 100_000 + "'. Error: the reason"
    cut = bounded_message(message, 1000)
    assert len(cut) < 1100
    assert cut.startswith("Failed to predict data 'xxx")
    assert cut.endswith("'. Error: the reason")
    assert f"({len(message) - 1000} characters cut)" in cut
    assert bounded_message("fine") == "fine"


def test_log_values_stay_on_their_line() -> None:
    assert log_safe("evil\nFORGED\r\x1b[2J\u2028x\tz") == "evil\\nFORGED\\r\\x1b[2J\\u2028x\\tz"
    assert log_safe("plain name-1.2") == "plain name-1.2"
    assert log_safe("y" * 1000, 10) == "y" * 10 + "... (cut at 10 characters)"


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "\\\\", "b": [[[[[[[[[1]]]]]]]]]}',  # an escaped backslash, then a real quote
        b'{"k\\"[[[[[[[[[[": [[[[[[[[[1]]]]]]]]]}',  # an escaped quote inside a key
        b'{"a": "]]]]]]]]]]]]]]]]]]]]", "b": [[[[[[[[[1]]]]]]]]]}',  # closers in a string
        '{"a": [[[[[[[[[1]]]]]]]]]}'.encode("utf-16"),  # the standard library reads UTF-16
    ],
)
def test_strings_cannot_hide_nesting(body: bytes) -> None:
    found = LIMITS.depth_problem(body)
    assert found is not None
    assert "nested 10 levels" in found, found
