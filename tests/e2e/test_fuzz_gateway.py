"""Hostile requests through a real regserve: no 5xx for a caller's mistake, nothing dies.

Hypothesis sends almost-right and plainly wrong requests to the scoring URLs, every control
route and the hosted registry's routes: odd model names and refs, wrong methods, bodies of the
wrong shape or type, garbage, odd content types and parameters. Every answer must be below 500
and carry ``error_code`` when it is an error; afterwards the served version still answers and
its worker is the same process. Fixed randomness in CI; ``make fuzz`` runs longer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzz import FUZZ
from tests.support.registry import one_version_served
from tests.support.server import RegServeProcess

pytestmark = pytest.mark.e2e

MODEL = "fuzz-model"
EP = "/api/2.0/preview/mlflow/endpoints"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    yield from one_version_served(tmp_path_factory.mktemp("fuzz") / "data", MODEL)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
names = st.one_of(
    st.just(MODEL), st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s and s.strip())
)
# The control routes never name the served model: a fuzzed "disable" would stop it.
other_names = names.filter(lambda s: s != MODEL)
fields = st.sampled_from([
    "registered_model_name", "endpoint_version_name", "desired_cluster_config", "node_type_id",
    "tags", "max_events", "access_control_list", "lifetime_seconds", "comment", "token_id",
    "name", "version", "stage",
])  # fmt: skip
bodies = st.one_of(
    st.dictionaries(fields, st.one_of(values, other_names), max_size=4).map(json.dumps),
    values.map(json.dumps),
    st.text(max_size=60),
).map(str.encode)
control_routes = st.sampled_from([
    ("POST", f"{EP}/enable"), ("POST", f"{EP}/disable"), ("GET", f"{EP}/get-status"),
    ("GET", f"{EP}/list-versions"), ("GET", f"{EP}/list-version-aliases"),
    ("POST", f"{EP}/get-version-logs"), ("GET", f"{EP}/get-event-history"),
    ("GET", f"{EP}/get-metric-history"), ("PUT", f"{EP}/update-cluster-config"),
    ("POST", "/api/2.0/token/create"), ("POST", "/api/2.0/token/delete"),
    ("PATCH", "/api/2.0/permissions/registered-models/fuzz-x"),
    ("POST", "/api/2.0/mlflow/registered-models/get"),
    ("GET", "/api/2.0/mlflow/model-versions/get"),
    ("POST", "/api/2.0/mlflow/model-versions/transition-stage"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts"), ("DELETE", f"{EP}/list"),
])  # fmt: skip
content_types = st.sampled_from(
    ["application/json", "text/csv", "application/x-parquet", "text/plain", "", "image/png"]
)


def _check(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:300])
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        answer: Any = response.json()
        assert isinstance(answer, dict), (what, answer)
        assert "error_code" in answer, (what, answer)


@FUZZ
@given(
    name=names,
    ref=st.one_of(
        st.sampled_from(["1", "latest", "Production", "@none", "99"]), st.text(max_size=8)
    ),
    content_type=content_types,
    body=st.one_of(bodies, st.binary(max_size=120)),
)
def test_scoring_urls(
    served: RegServeProcess, name: str, ref: str, content_type: str, body: bytes
) -> None:
    url = f"/model/{quote(name, safe='')}/{quote(ref, safe='@') or 'x'}/invocations"
    headers = {"content-type": content_type} if content_type else {}
    _check(served.client.post(url, content=body, headers=headers), url)


@FUZZ
@given(route=control_routes, body=bodies, params=st.dictionaries(fields, other_names, max_size=3))
def test_control_and_registry_routes(
    served: RegServeProcess, route: tuple[str, str], body: bytes, params: dict[str, str]
) -> None:
    method, path = route
    kwargs: dict[str, Any] = {"params": params}
    if method != "GET":
        kwargs |= {"content": body, "headers": {"content-type": "application/json"}}
    _check(served.client.request(method, path, **kwargs), f"{method} {path}")


def test_still_serving_after_the_fuzzing(served: RegServeProcess) -> None:
    assert served.process is not None
    assert served.process.poll() is None
    version = served.versions(MODEL)["1"]
    assert version["state"] == "VERSION_STATE_READY"
    r = served.score(MODEL, "1", {"dataframe_records": [ROW]})
    assert r.status_code == 200, r.text
    restarts = [e for e in served.events(MODEL) if e["event_type"] == "WORKER_CRASHED"]
    assert restarts == []
