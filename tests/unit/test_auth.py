"""Permission levels, the MLflow route rules, the caches and the rate limiter."""

from __future__ import annotations

import warnings

import pytest

from regserve.auth.cache import TTLCache
from regserve.auth.levels import PermissionLevel, level_for_stage
from regserve.auth.mlflow_rules import Access, classify, normalize
from regserve.auth.ratelimit import RateLimiter
from regserve.errors import InvalidParameterError, RateLimitedError


def test_levels_include_the_lower_ones() -> None:
    assert PermissionLevel.parse("can_manage") is PermissionLevel.CAN_MANAGE
    assert PermissionLevel.CAN_EDIT.included() == [
        PermissionLevel.CAN_READ, PermissionLevel.CAN_EDIT,
    ]  # fmt: skip
    assert level_for_stage("production") is PermissionLevel.CAN_MANAGE_PRODUCTION_VERSIONS
    assert level_for_stage("Archived") is PermissionLevel.CAN_MANAGE_STAGING_VERSIONS
    with pytest.raises(InvalidParameterError):
        PermissionLevel.parse("NONE")


@pytest.mark.parametrize(
    ("method", "path", "access", "level"),
    [
        ("GET", "/api/2.0/mlflow/registered-models/get", Access.MODEL, 1),
        ("GET", "/ajax-api/2.0/mlflow/model-versions/get", Access.MODEL, 1),
        ("POST", "/api/2.0/mlflow/model-versions/create", Access.MODEL, 2),
        ("POST", "/api/2.0/mlflow/registered-models/alias", Access.MODEL, 4),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete", Access.MODEL, 5),
        ("POST", "/api/2.0/mlflow/registered-models/rename", Access.MODEL, 5),
        ("POST", "/api/2.0/mlflow/model-versions/transition-stage", Access.TRANSITION, 0),
        ("POST", "/api/2.0/mlflow/registered-models/create", Access.CREATE, 0),
        ("GET", "/api/2.0/mlflow/model-versions/search", Access.SEARCH, 0),
        ("GET", "/model-versions/get-artifact", Access.MODEL, 1),
        ("POST", "/api/2.0/mlflow/runs/create", Access.ANY, 0),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/x/model.pkl", Access.ARTIFACT, 0),
        ("GET", "/api/2.0/mlflow/webhooks", Access.ADMIN, 0),
        ("POST", "/graphql", Access.ADMIN, 0),
        ("GET", "/api/2.0/mlflow/registered-models/delete", Access.ADMIN, 0),  # wrong method
        ("POST", "/api/3.0/mlflow/gateway/secrets/create", Access.ADMIN, 0),
        ("GET", "/api/2.0/mlflow/users/get", Access.ADMIN, 0),
    ],
)
def test_classify(method: str, path: str, access: Access, level: int) -> None:
    rule = classify(method, path)
    assert rule.access is access
    assert rule.level == level


def test_preview_prefix_is_served_as_mlflow() -> None:
    assert normalize("/api/2.0/preview/mlflow/model-versions/search") == (
        "/api/2.0/mlflow/model-versions/search"
    )
    assert normalize("/api/2.0/mlflow/x") == "/api/2.0/mlflow/x"


def test_every_mlflow_route_is_classified_and_the_open_ones_are_known() -> None:
    """Anything of MLflow's server that a non-admin may call is named here: a new route in
    a later MLflow release either falls under a documented class or is admin-only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.server import app

    documented = (
        "/api/2.0/mlflow/registered-models/", "/ajax-api/2.0/mlflow/registered-models/",
        "/api/2.0/mlflow/model-versions/", "/ajax-api/2.0/mlflow/model-versions/",
        "/api/2.0/mlflow/experiments/", "/ajax-api/2.0/mlflow/experiments/",
        "/api/2.0/mlflow/runs/", "/ajax-api/2.0/mlflow/runs/",
        "/api/2.0/mlflow/metrics/", "/ajax-api/2.0/mlflow/metrics/",
        "/api/2.0/mlflow/logged-models", "/ajax-api/2.0/mlflow/logged-models",
        "/api/2.0/mlflow/artifacts/list", "/ajax-api/2.0/mlflow/artifacts/list",
        "/api/2.0/mlflow-artifacts/", "/ajax-api/2.0/mlflow-artifacts/",
        "/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info",
        "/static-files/", "/model-versions/get-artifact", "/get-artifact", "/version",
    )  # fmt: skip
    rules = [(m, r.rule) for r in app.url_map.iter_rules() for m in r.methods - {"OPTIONS"}]
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
