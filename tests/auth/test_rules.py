"""Permission levels, the MLflow route rules, the caches and the rate limiter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from regserve.auth.cache import TTLCache
from regserve.auth.levels import PermissionLevel, level_for_stage
from regserve.auth.mlflow_rules import Access, classify, normalize
from regserve.auth.ratelimit import RateLimiter
from regserve.auth.registry_params import registry_params
from regserve.errors import InvalidParameterError, RateLimitedError

LOGGED = "m-fedcba9876543210fedcba9876543210"


def test_levels_include_the_lower_ones() -> None:
    assert PermissionLevel.parse("can_manage") is PermissionLevel.CAN_MANAGE
    assert PermissionLevel.CAN_EDIT.included() == [
        PermissionLevel.CAN_READ,
        PermissionLevel.CAN_EDIT,
    ]
    assert level_for_stage("production") is PermissionLevel.CAN_MANAGE_PRODUCTION_VERSIONS
    assert level_for_stage("Archived") is PermissionLevel.CAN_MANAGE_STAGING_VERSIONS
    with pytest.raises(InvalidParameterError):
        PermissionLevel.parse("NONE")


@pytest.mark.parametrize(
    ("method", "path", "access", "level"),
    [
        ("GET", "/api/2.0/mlflow/registered-models/get", Access.MODEL, 1),
        ("GET", "/ajax-api/2.0/mlflow/model-versions/get", Access.MODEL, 1),
        ("POST", "/api/2.0/mlflow/model-versions/create", Access.CREATE_VERSION, 2),
        ("POST", "/api/2.0/mlflow/registered-models/alias", Access.MODEL, 4),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete", Access.MODEL, 5),
        ("POST", "/api/2.0/mlflow/registered-models/rename", Access.MODEL, 5),
        ("POST", "/api/2.0/mlflow/model-versions/transition-stage", Access.TRANSITION, 0),
        ("POST", "/api/2.0/mlflow/registered-models/create", Access.CREATE, 0),
        ("GET", "/api/2.0/mlflow/model-versions/search", Access.SEARCH, 0),
        ("GET", "/model-versions/get-artifact", Access.MODEL, 1),
        ("POST", "/api/2.0/mlflow/runs/create", Access.OWNED, 0),
        ("POST", "/api/2.0/mlflow/runs/log-metric", Access.ANY, 0),
        ("POST", "/api/2.0/mlflow/logged-models", Access.OWNED, 0),
        ("GET", f"/api/2.0/mlflow/logged-models/{LOGGED}", Access.LOGGED_MODEL_READ, 0),
        ("POST", "/ajax-api/2.0/mlflow/logged-models/search", Access.LOGGED_MODEL_READ, 0),
        ("PATCH", f"/api/2.0/mlflow/logged-models/{LOGGED}", Access.LOGGED_MODEL, 5),
        ("DELETE", f"/api/2.0/mlflow/logged-models/{LOGGED}", Access.LOGGED_MODEL, 5),
        ("POST", f"/api/2.0/mlflow/logged-models/{LOGGED}/params", Access.LOGGED_MODEL, 0),
        ("PATCH", f"/api/2.0/mlflow/logged-models/{LOGGED}/tags", Access.LOGGED_MODEL, 0),
        ("DELETE", f"/api/2.0/mlflow/logged-models/{LOGGED}/tags/k", Access.LOGGED_MODEL, 0),
        ("PUT", f"/api/2.0/mlflow/logged-models/{LOGGED}/params", Access.ADMIN, 0),
        ("GET", "/api/2.0/mlflow-artifacts/presigned/0/x", Access.ARTIFACT, 0),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/x/model.pkl", Access.ARTIFACT, 0),
        ("GET", "/api/2.0/mlflow/webhooks", Access.ADMIN, 0),
        ("POST", "/graphql", Access.GRAPHQL, 0),  # its reads: graphql_rules.py
        ("GET", "/graphql", Access.ADMIN, 0),
        ("GET", "/api/2.0/mlflow/registered-models/delete", Access.ADMIN, 0),  # wrong method
        ("POST", "/api/3.0/mlflow/gateway/secrets/create", Access.ADMIN, 0),
        ("GET", "/api/2.0/mlflow/users/get", Access.ADMIN, 0),
    ],
)
def test_classify(method: str, path: str, access: Access, level: int) -> None:
    rule = classify(method, path)
    assert rule.access is access
    assert rule.level == level
    if access is Access.LOGGED_MODEL:
        assert rule.owner_id == LOGGED


@pytest.mark.parametrize(
    ("method", "query", "body", "expected"),
    [
        # MLflow's int(): every spelling of version 1 is version 1.
        ("POST", b"", b'{"name": "m", "version": "01"}', {"name": "m", "version": "1"}),
        ("POST", b"", b'{"name": "m", "version": " 1"}', {"name": "m", "version": "1"}),
        ("POST", b"", b'{"name": "m", "version": "+1"}', {"name": "m", "version": "1"}),
        ("POST", b"", b'{"name": "m", "version": "1_0"}', {"name": "m", "version": "10"}),
        ("POST", b"", b'{"name": "m", "version": 2}', {"name": "m", "version": "2"}),
        ("POST", b"", b'{"name": "m", "version": "x"}', {"name": "m", "version": "x"}),
        ("GET", b"name=m&version=%2B3&name=other", b"", {"name": "m", "version": "3"}),
        # protobuf's JSON names are read under the field's name; the body of a JSON string too
        ("POST", b"", b'{"name": "a", "newName": "b"}', {"name": "a", "new_name": "b"}),
        ("POST", b"", b'"{\\"name\\": \\"s\\"}"', {"name": "s"}),
        # MLflow reads the query only for GET; HEAD and a GET without one read the body
        ("HEAD", b"name=q", b'{"name": "b"}', {"name": "b"}),
        ("GET", b"", b'{"name": "b"}', {"name": "b"}),
        ("POST", b"name=q", b"not json", {}),
    ],
)
def test_registry_params_are_read_as_mlflow_reads_them(
    method: str, query: bytes, body: bytes, expected: dict[str, str]
) -> None:
    assert registry_params(method, query, body) == expected


def test_preview_prefix_is_served_as_mlflow() -> None:
    assert normalize("/api/2.0/preview/mlflow/model-versions/search") == (
        "/api/2.0/mlflow/model-versions/search"
    )
    assert normalize("/api/2.0/mlflow/x") == "/api/2.0/mlflow/x"


def test_every_mlflow_route_is_classified_and_the_open_ones_are_known() -> None:
    """Anything of MLflow's server that a non-admin may call is named here: a new route in
    a later MLflow release either falls under a documented class or is admin-only."""
    documented = (
        "/api/2.0/mlflow/registered-models/",
        "/ajax-api/2.0/mlflow/registered-models/",
        "/api/2.0/mlflow/model-versions/",
        "/ajax-api/2.0/mlflow/model-versions/",
        "/api/2.0/mlflow/experiments/",
        "/ajax-api/2.0/mlflow/experiments/",
        "/api/2.0/mlflow/runs/",
        "/ajax-api/2.0/mlflow/runs/",
        "/api/2.0/mlflow/metrics/",
        "/ajax-api/2.0/mlflow/metrics/",
        "/api/2.0/mlflow/logged-models",
        "/ajax-api/2.0/mlflow/logged-models",
        "/api/2.0/mlflow/artifacts/list",
        "/ajax-api/2.0/mlflow/artifacts/list",
        "/api/2.0/mlflow-artifacts/",
        "/ajax-api/2.0/mlflow-artifacts/",
        "/api/3.0/mlflow/server-info",
        "/ajax-api/3.0/mlflow/server-info",
        "/static-files/",
        "/model-versions/get-artifact",
        "/get-artifact",
        "/version",
        "/graphql",
    )
    rules = _mlflow_server_rules()
    assert len(rules) > 300
    not_admin = {
        path for method, path in rules if classify(method, path).access is not Access.ADMIN
    }
    undocumented = {p for p in not_admin if p != "/" and not p.startswith(documented)}
    assert undocumented == set()
    assert classify("GET", "/api/2.0/mlflow/registered-models/search").access is Access.SEARCH


def test_ttl_cache_expires_and_is_bounded() -> None:
    now = [0.0]
    cache: TTLCache[str, int] = TTLCache(10, 2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # "b" was used least recently
    assert cache.get("b") is None
    assert cache.get("a") == 1
    now[0] = 11
    assert cache.get("a") is None
    assert len(cache) == 1


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    limiter.check("t")
    limiter.check("t")
    with pytest.raises(RateLimitedError) as caught:
        limiter.check("t")
    assert caught.value.retry_after == 1
    limiter.check("other")  # buckets are per token
    now[0] = 0.5
    limiter.check("t")


def _mlflow_server_rules() -> list[tuple[str, str]]:
    """(method, path) of every route of MLflow's server, read in a child process: importing
    ``mlflow.server`` here would fix its configuration for this whole test process, before
    the hosted registry's tests could set it (tests/registry)."""
    code = (
        "import json, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from mlflow.server import app\n"
        "print(json.dumps([(m, r.rule) for r in app.url_map.iter_rules()"
        " for m in sorted(r.methods - {'OPTIONS'})]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return [(method, path) for method, path in json.loads(run.stdout.splitlines()[-1])]
