"""Hostile requests through a real regserve: no 5xx for a caller's mistake, nothing dies.

Hypothesis sends almost-right and plainly wrong requests to the scoring URLs, every control
route and the hosted registry's routes: odd model names and refs, wrong methods, bodies of the
wrong shape or type, garbage, odd content types and parameters. Every answer must be below 500
and carry ``error_code`` when it is an error; afterwards the served version still answers and
its worker is the same process. Fixed randomness in CI; ``make fuzz`` runs longer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzz import FUZZ, STAGE_OPS, FuzzRequest, Victim, registry_requests
from tests.support.registry import one_version_served
from tests.support.server import RegServeProcess

pytestmark = pytest.mark.e2e

MODEL = "fuzz-model"
EP = "/api/2.0/preview/mlflow/endpoints"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
SCIM_USERS = "/api/2.0/preview/scim/v2/Users"
ON_BEHALF = "/api/2.0/token-management/on-behalf-of/tokens"
PERMS = "/api/2.0/permissions/registered-models"


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
fields = st.sampled_from(
    [
        "registered_model_name",
        "endpoint_version_name",
        "desired_cluster_config",
        "node_type_id",
        "tags",
        "max_events",
        "access_control_list",
        "lifetime_seconds",
        "comment",
        "token_id",
        "name",
        "version",
        "stage",
    ]
)
bodies = st.one_of(
    st.dictionaries(fields, st.one_of(values, other_names), max_size=4).map(json.dumps),
    values.map(json.dumps),
    st.text(max_size=60),
).map(str.encode)
control_routes = st.sampled_from(
    [
        ("POST", f"{EP}/enable"),
        ("POST", f"{EP}/disable"),
        ("GET", f"{EP}/get-status"),
        ("GET", f"{EP}/list-versions"),
        ("GET", f"{EP}/list-version-aliases"),
        ("POST", f"{EP}/get-version-logs"),
        ("GET", f"{EP}/get-event-history"),
        ("GET", f"{EP}/get-metric-history"),
        ("PUT", f"{EP}/update-cluster-config"),
        ("POST", "/api/2.0/token/create"),
        ("POST", "/api/2.0/token/delete"),
        ("PATCH", "/api/2.0/permissions/registered-models/fuzz-x"),
        ("POST", "/api/2.0/mlflow/registered-models/get"),
        ("GET", "/api/2.0/mlflow/model-versions/get"),
        ("POST", "/api/2.0/mlflow/model-versions/transition-stage"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts"),
        ("DELETE", f"{EP}/list"),
    ]
)
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


# -- the hosted registry, as principals with no rights, CAN_READ or staging rights on it --------

SECRET = "fuzz-secret-5d0c1f"
"""In the served model's description, a version tag and a file: nobody without rights sees it."""
LOW = {"nobody": None, "reader": "CAN_READ", "stager": "CAN_MANAGE_STAGING_VERSIONS"}


@pytest.fixture(scope="module")
def victim(served: RegServeProcess) -> tuple[Victim, dict[str, dict[str, str]]]:
    """The served model as the admin's own (version 1 in Production, alias champion, a secret
    in its description, a tag and a file), and a token for each low-privilege principal."""
    admin = served.client
    mv = admin.get("/api/2.0/mlflow/model-versions/get", params={"name": MODEL, "version": "1"})
    version = mv.json()["model_version"]
    model_id = version["source"].removeprefix("models:/")
    logged = admin.get(f"/api/2.0/mlflow/logged-models/{model_id}").json()["model"]["info"]
    root = logged["artifact_uri"].removeprefix("mlflow-artifacts:/")
    one = {"name": MODEL, "version": "1"}
    _as_admin(served, "POST", "model-versions/transition-stage", {**one, "stage": "Production"})
    _as_admin(served, "POST", "registered-models/alias", {**one, "alias": "champion"})
    _as_admin(served, "PATCH", "registered-models/update", {"name": MODEL, "description": SECRET})
    _as_admin(served, "POST", "model-versions/set-tag", {**one, "key": "secret", "value": SECRET})
    secret = admin.put(f"/api/2.0/mlflow-artifacts/artifacts/{root}/secret.txt", content=SECRET)
    assert secret.status_code == 200, secret.text
    tokens = {}
    for who, level in LOW.items():
        user = f"fuzz-{who}"
        assert admin.post(SCIM_USERS, json={"userName": user}).status_code == 200
        made = admin.post(ON_BEHALF, json={"application_id": user, "lifetime_seconds": 3600})
        tokens[who] = {"Authorization": f"Bearer {made.json()['token_value']}"}
        if level is not None:
            acl = {"access_control_list": [{"user_name": user, "permission_level": level}]}
            assert admin.patch(f"{PERMS}/{MODEL}", json=acl).status_code == 200
    local = served.data_dir / "artifacts" / root
    return Victim(MODEL, model_id, version["run_id"], root, str(local), served.url), tokens


def _as_admin(served: RegServeProcess, method: str, op: str, body: dict[str, Any]) -> None:
    answer = served.client.request(method, f"/api/2.0/mlflow/{op}", json=body)
    assert answer.status_code == 200, answer.text


def _state(served: RegServeProcess, v: Victim) -> dict[str, Any]:
    """Everything about the victim that no low-privilege call may change."""
    admin = served.client
    model = admin.get("/api/2.0/mlflow/registered-models/get", params={"name": v.name})
    versions = admin.get(
        "/api/2.0/mlflow/model-versions/search", params={"filter": f"name='{v.name}'"}
    )
    logged = admin.get(f"/api/2.0/mlflow/logged-models/{v.model_id}").json()["model"]
    logged["info"]["tags"] = [
        t for t in logged["info"].get("tags", []) if t["key"] != "mlflow.modelVersions"
    ]
    logged["info"].pop("last_updated_timestamp_ms", None)
    files = {
        str(p.relative_to(v.local_root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(v.local_root).rglob("*"))
        if p.is_file()
    }
    served_version = served.versions(v.name)["1"]
    return {
        "model": model.json(),
        "versions": versions.json(),
        "logged": logged,
        "files": files,
        "serving": (served_version["state"], served_version["worker_pid"]),
    }


def test_registry_routes_as_low_privilege_principals(
    served: RegServeProcess, victim: tuple[Victim, dict[str, dict[str, str]]]
) -> None:
    """No 5xx, and no call that changes or reveals another principal's model: every
    registry, logged model and artifact route, the model and its files named in every
    spelling, every source form, as a principal with no rights, CAN_READ or staging rights."""
    v, tokens = victim
    before = _state(served, v)
    requests = st.one_of(
        st.tuples(st.just("nobody"), registry_requests(v)),
        st.tuples(st.just("reader"), registry_requests(v)),
        st.tuples(st.just("stager"), registry_requests(v, STAGE_OPS)),
    )

    @FUZZ
    @given(drawn=requests)
    def attack(drawn: tuple[str, FuzzRequest]) -> None:
        who, request = drawn
        what = f"{who}: {request.describe()}"
        response = served.client.request(
            request.method,
            request.path,
            params=request.params,
            content=request.body,
            headers={**tokens[who], "content-type": "application/json"},
        )
        _check(response, what)
        if who == "nobody":
            assert SECRET not in response.text, (what, response.text[:500])
            named = v.name in request.describe() or v.model_id in request.describe()
            assert named or v.name not in response.text, (what, response.text[:500])

    attack()
    after = _state(served, v)
    for key, value in before.items():
        assert after[key] == value, (key, value, after[key])


def test_still_serving_after_the_fuzzing(served: RegServeProcess) -> None:
    assert served.process is not None
    assert served.process.poll() is None
    version = served.versions(MODEL)["1"]
    assert version["state"] == "VERSION_STATE_READY"
    r = served.score(MODEL, "1", {"dataframe_records": [ROW]})
    assert r.status_code == 200, r.text
    restarts = [e for e in served.events(MODEL) if e["event_type"] == "WORKER_CRASHED"]
    assert restarts == []
