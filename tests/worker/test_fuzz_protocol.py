"""Hostile bodies against a real worker: every answer is a clear 4xx or a 200, never a 5xx,
and the worker lives on.

Hypothesis builds scoring bodies that are almost right (the protocol's keys with wrong shapes,
wrong types, unknown columns, odd params), plain garbage, and CSV and Parquet that are not.
The example count and the randomness are fixed so CI is repeatable; ``REGSERVE_FUZZ_EXAMPLES``
and ``REGSERVE_FUZZ_RANDOM=1`` make a longer, new run (``make fuzz``).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.conformance_cases import COLUMNS
from tests.support.fuzz import FUZZ
from tests.worker.conftest import WireClient, WorkerProcess

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["NaN", "Infinity", "-1e400", "1" * 30]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
columns = st.lists(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=6)), max_size=5)
row = st.dictionaries(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=6)), scalars)
split = st.fixed_dictionaries(
    {},
    optional={
        "columns": columns,
        "data": st.lists(st.lists(scalars, max_size=5), max_size=4),
        "index": values,
    },
)
payloads = st.one_of(
    st.fixed_dictionaries({"dataframe_split": st.one_of(split, values)}),
    st.fixed_dictionaries({"dataframe_records": st.one_of(st.lists(row, max_size=4), values)}),
    st.fixed_dictionaries({"instances": values}),
    st.fixed_dictionaries({"inputs": values}),
    st.dictionaries(
        st.sampled_from(
            ["dataframe_split", "dataframe_records", "instances", "inputs", "params", "extra"]
        ),
        values,
        max_size=3,
    ),
    values,
)
json_bodies = payloads.map(lambda p: json.dumps(p).encode())
garbage = st.binary(max_size=200)
csv_bodies = st.lists(st.lists(st.text(max_size=6), max_size=5), max_size=5).map(
    lambda rows: "\n".join(",".join(r) for r in rows).encode()
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/csv",
        "text/csv; charset=utf-8",
        "application/x-parquet",
        "application/octet-stream",
        "text/plain",
        "application/json;format=pandas-split",
        "",
        "application/json; charset=latin-1",
    ]
)
requests = st.one_of(
    st.tuples(st.just("application/json"), json_bodies),
    st.tuples(st.just("text/csv"), csv_bodies),
    st.tuples(content_types, st.one_of(garbage, json_bodies, csv_bodies)),
)


def _check(client: WireClient, content_type: str, body: bytes) -> None:
    response = client.call(content_type or None, body)
    answer: Any = json.loads(response.body)
    assert response.status < 500, (content_type, body[:300], response.status, answer)
    if response.status != 200:
        assert isinstance(answer.get("error_code"), str), answer
        assert isinstance(answer.get("message"), str), answer


@FUZZ
@given(request=requests)
def test_hostile_bodies_get_4xx_never_5xx(
    worker: WorkerProcess, client: WireClient, request: tuple[str, bytes]
) -> None:
    _check(client, *request)


def test_the_worker_survived_the_fuzzing(worker: WorkerProcess, client: WireClient) -> None:
    assert worker.proc.poll() is None
    assert client.ping()
    body = json.dumps({"dataframe_records": [dict.fromkeys(COLUMNS, 1.0)]}).encode()
    assert client.call("application/json", body).status == 200
