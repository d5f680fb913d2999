"""Every route of the gateway x every kind of caller -> the expected status and error_code.

The routes are read from the gateway's own FastAPI app (plus the scoring route and the
hosted registry's mount), so a route added without a row here fails ``test_every_route``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount

from regserve.gateway.asgi import build_api
from regserve.ui import install_ui
from regserve.worker.fetch import FILES_PATH
from tests.support.server import ADMIN_TOKEN, RegServeProcess

pytestmark = pytest.mark.e2e

MODEL = "matrix-model"
EP = "/api/2.0/preview/mlflow/endpoints"
SCIM = "/api/2.0/preview/scim/v2"
PERMS = "/api/2.0/permissions/registered-models"
MODELS = "/api/2.0/regserve/models"
TRAFFIC = "/api/2.0/regserve/endpoints/traffic"
INFERENCE_TABLE = "/api/2.0/regserve/inference-tables/read"
CREDENTIAL_FAILURES = ("no token", "malformed", "unknown", "expired", "revoked")
LEVELS = {"no permission": 0, "CAN_READ": 1, "CAN_EDIT": 2, "CAN_MANAGE": 5, "admin": 9}
CALLERS = (*CREDENTIAL_FAILURES, *LEVELS)
MANAGE_PROD = 4
_counter = itertools.count()

# An ACL PUT must put back what the fixture set, so that later rows see the same rights.
ACL = [
    {"user_name": "reader", "permission_level": "CAN_READ"},
    {"user_name": "editor", "permission_level": "CAN_EDIT"},
    {"user_name": "manager", "permission_level": "CAN_MANAGE"},
    {"user_name": "no-entitlement", "permission_level": "CAN_MANAGE"},
]


@dataclass(frozen=True)
class Row:
    """One route: the request to send and who gets what."""

    request: Callable[[], dict[str, Any]]
    needs: str | int
    """``open``, ``any`` (authenticated), ``admin``, or a level from LEVELS."""
    ok: tuple[int, str | None] = (200, None)
    """What a caller who may call it gets (the route's own answer to this request)."""
    methods: tuple[str, ...] = field(default=())
    page: bool = False
    """A UI page: without valid credentials it redirects to sign-in (303); refusals are HTML."""


def _req(method: str, url: str, **kw: Any) -> Callable[[], dict[str, Any]]:
    return lambda: {"method": method, "url": url, **kw}


def _unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


_MODEL_BODY = {"json": {"registered_model_name": MODEL}}
_MODEL_PARAM = {"registered_model_name": MODEL}
_VERSION = {"registered_model_name": MODEL, "endpoint_version_name": "1"}
_NOT_SERVED = (404, "RESOURCE_DOES_NOT_EXIST")

# (method, route path as the app declares it) -> Row
MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/health"): Row(_req("GET", "/health"), "open"),
    ("GET", "/metrics"): Row(_req("GET", "/metrics"), "any"),
    # Open to tokens and their absence alike: only a valid MLflow signature gets past it.
    ("POST", "/api/2.0/regserve/registry-webhook"): Row(
        _req("POST", "/api/2.0/regserve/registry-webhook", json={}),
        "open",
        (401, "UNAUTHENTICATED"),
    ),
    ("GET", "/openapi.json"): Row(_req("GET", "/openapi.json"), "any"),
    # Open to tokens, the admin's included: only a version's files credential (what regserve
    # gives the version's Ray replicas) gets past it.
    ("GET", FILES_PATH): Row(
        _req("GET", FILES_PATH, params={"name": MODEL, "version": "1"}),
        "open",
        (401, "UNAUTHENTICATED"),
    ),
    ("POST", f"{EP}/enable"): Row(_req("POST", f"{EP}/enable", **_MODEL_BODY), 5),
    ("POST", f"{EP}/disable"): Row(_req("POST", f"{EP}/disable", **_MODEL_BODY), 5),
    ("GET", f"{EP}/get-status"): Row(
        _req("GET", f"{EP}/get-status", params={"registered_model_name": MODEL}), 1
    ),
    ("GET", f"{EP}/list"): Row(_req("GET", f"{EP}/list"), "any"),
    ("GET", f"{EP}/list-versions"): Row(
        _req("GET", f"{EP}/list-versions", params={"registered_model_name": MODEL}), 1
    ),
    ("GET", f"{EP}/list-version-aliases"): Row(
        _req("GET", f"{EP}/list-version-aliases", params={"registered_model_name": MODEL}), 1
    ),
    # Version 1 is not served but left its last log (the fixture writes it where a stopped
    # version's log is kept): read with the same rights as a served version's.
    ("POST", f"{EP}/get-version-logs"): Row(
        _req("POST", f"{EP}/get-version-logs", json=_VERSION), 1
    ),
    ("GET", f"{EP}/get-version-logs"): Row(
        _req("GET", f"{EP}/get-version-logs", params=_VERSION), 1
    ),
    ("GET", f"{EP}/get-event-history"): Row(
        _req("GET", f"{EP}/get-event-history", params={"registered_model_name": MODEL}), 1
    ),
    ("GET", f"{EP}/get-metric-history"): Row(
        _req("GET", f"{EP}/get-metric-history", params={"registered_model_name": MODEL}), 1
    ),
    ("PUT", f"{EP}/update-cluster-config"): Row(
        _req(
            "PUT",
            f"{EP}/update-cluster-config",
            json={
                "registered_model_name": MODEL,
                "desired_cluster_config": {"node_type_id": "local-default", "tags": []},
            },
        ),
        5,
    ),
    ("GET", "/api/2.0/clusters/list-node-types"): Row(
        _req("GET", "/api/2.0/clusters/list-node-types"), "any"
    ),
    **{
        (m, f"{EP}/{{rest:path}}"): Row(
            _req(m, f"{EP}/no-such-route"), "any", (404, "ENDPOINT_NOT_FOUND")
        )
        for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
    },
    ("POST", "/api/2.0/token/create"): Row(
        _req("POST", "/api/2.0/token/create", json={"comment": "matrix", "lifetime_seconds": 60}),
        "any",
    ),
    ("GET", "/api/2.0/token/list"): Row(_req("GET", "/api/2.0/token/list"), "any"),
    ("POST", "/api/2.0/token/delete"): Row(
        _req("POST", "/api/2.0/token/delete", json={"token_id": "nope"}), "any", _NOT_SERVED
    ),
    ("POST", "/api/2.0/token-management/on-behalf-of/tokens"): Row(
        _req(
            "POST",
            "/api/2.0/token-management/on-behalf-of/tokens",
            json={"application_id": "reader", "lifetime_seconds": 60},
        ),
        "admin",
    ),
    ("GET", "/api/2.0/token-management/tokens"): Row(
        _req("GET", "/api/2.0/token-management/tokens"), "admin"
    ),
    ("DELETE", "/api/2.0/token-management/tokens/{token_id}"): Row(
        _req("DELETE", "/api/2.0/token-management/tokens/nope"), "admin", _NOT_SERVED
    ),
    ("POST", f"{SCIM}/ServicePrincipals"): Row(
        lambda: {
            "method": "POST",
            "url": f"{SCIM}/ServicePrincipals",
            "json": {"displayName": _unique("sp")},
        },
        "admin",
    ),
    ("GET", f"{SCIM}/ServicePrincipals"): Row(_req("GET", f"{SCIM}/ServicePrincipals"), "admin"),
    ("POST", f"{SCIM}/Users"): Row(
        lambda: {"method": "POST", "url": f"{SCIM}/Users", "json": {"userName": _unique("u")}},
        "admin",
    ),
    ("GET", f"{SCIM}/Users"): Row(_req("GET", f"{SCIM}/Users"), "admin"),
    # One principal: an id nobody has (the behaviour is tested in test_auth_registry.py).
    **{
        (method, f"{SCIM}/{kind}/{{principal_id}}"): Row(
            _req(method, f"{SCIM}/{kind}/424242", **body), "admin", _NOT_SERVED
        )
        for kind in ("Users", "ServicePrincipals")
        for method, body in (
            ("GET", {}),
            ("DELETE", {}),
            (
                "PATCH",
                {"json": {"Operations": [{"op": "replace", "path": "active", "value": False}]}},
            ),
        )
    },
    ("GET", f"{SCIM}/Me"): Row(_req("GET", f"{SCIM}/Me"), "any"),
    ("GET", "/api/2.0/regserve/audit-events"): Row(
        _req("GET", "/api/2.0/regserve/audit-events"), "admin"
    ),
    ("GET", f"{PERMS}/{{name:path}}"): Row(_req("GET", f"{PERMS}/{MODEL}"), 1),
    ("PUT", f"{PERMS}/{{name:path}}"): Row(
        _req("PUT", f"{PERMS}/{MODEL}", json={"access_control_list": ACL}), 5
    ),
    ("PATCH", f"{PERMS}/{{name:path}}"): Row(
        _req("PATCH", f"{PERMS}/{MODEL}", json={"access_control_list": ACL[:1]}), 5
    ),
    # regserve's views of a model for the UI.
    ("GET", f"{MODELS}/get"): Row(_req("GET", f"{MODELS}/get", params=_MODEL_PARAM), 1),
    ("GET", f"{MODELS}/get-input-example"): Row(
        _req("GET", f"{MODELS}/get-input-example", params={**_MODEL_PARAM, "version": "1"}),
        1,
        _NOT_SERVED,
    ),
    # The UI: pages, sign-in (open; this form lacks its CSRF cookie), sign-out, static files.
    ("GET", "/ui"): Row(_req("GET", "/ui"), "any", (303, None), page=True),
    ("GET", "/ui/"): Row(_req("GET", "/ui/"), "any", page=True),
    ("GET", "/ui/models/{name:path}"): Row(_req("GET", f"/ui/models/{MODEL}"), 1, page=True),
    ("GET", "/ui/{path:path}"): Row(_req("GET", "/ui/no-such-page"), "any", (404, None), page=True),
    ("GET", "/ui/signin"): Row(_req("GET", "/ui/signin"), "open"),
    ("POST", "/ui/signin"): Row(
        _req("POST", "/ui/signin", data={"token": "x", "csrf": "forged"}), "open", (403, None)
    ),
    ("POST", "/ui/signout"): Row(_req("POST", "/ui/signout"), "any", (204, None)),
    ("MOUNT", "/ui/static"): Row(_req("GET", "/ui/static/ui.css"), "open"),
    # MLflow's own UI: the hosted server beneath /mlflow/, behind the same rules.
    ("GET", "/mlflow"): Row(_req("GET", "/mlflow"), "any", (303, None), page=True),
    ("MOUNT", "/mlflow"): Row(
        _req("GET", "/mlflow/ajax-api/2.0/mlflow/registered-models/get", params={"name": MODEL}),
        1,
    ),
    # The scoring routes (bare ASGI, not in FastAPI's table): no version is served.
    ("POST", "/model/{name}/{ref}/invocations"): Row(
        _req("POST", f"/model/{MODEL}/1/invocations", json={"inputs": [1]}), 1, _NOT_SERVED
    ),
    ("POST", "/model/{name}/invocations"): Row(
        _req("POST", f"/model/{MODEL}/invocations", json={"inputs": [1]}), 1, _NOT_SERVED
    ),
    ("GET", TRAFFIC): Row(_req("GET", TRAFFIC, params=_MODEL_PARAM), 1),
    ("PUT", TRAFFIC): Row(
        _req(
            "PUT",
            TRAFFIC,
            json={"registered_model_name": MODEL, "routes": [{"ref": "1", "percent": 100}]},
        ),
        5,
    ),
    # The captured rows hold callers' data: CAN_MANAGE only.
    ("GET", INFERENCE_TABLE): Row(_req("GET", INFERENCE_TABLE, params=_MODEL_PARAM), 5),
}
# The hosted MLflow server mounted at "/": one row per kind of rule (mlflow_rules.py).
REGISTRY_ROWS: dict[str, Row] = {
    "model read": Row(
        _req("GET", "/api/2.0/mlflow/registered-models/get", params={"name": MODEL}), 1
    ),
    "model read (preview prefix)": Row(
        _req("GET", "/api/2.0/preview/mlflow/registered-models/get", params={"name": MODEL}), 1
    ),
    "model edit": Row(
        _req(
            "PATCH",
            "/api/2.0/mlflow/registered-models/update",
            json={"name": MODEL, "description": "matrix"},
        ),
        2,
    ),
    "alias (production level)": Row(
        _req(
            "POST",
            "/api/2.0/mlflow/registered-models/alias",
            json={"name": MODEL, "alias": "x", "version": "9"},
        ),
        MANAGE_PROD,
        (404, "RESOURCE_DOES_NOT_EXIST"),
    ),
    "model delete": Row(
        _req(
            "DELETE", "/api/2.0/mlflow/model-versions/delete", json={"name": MODEL, "version": "9"}
        ),
        5,
        (404, "RESOURCE_DOES_NOT_EXIST"),
    ),
    "search": Row(_req("GET", "/api/2.0/mlflow/registered-models/search"), "any"),
    "tracking": Row(
        _req("GET", "/api/2.0/mlflow/experiments/search", params={"max_results": 1}), "any"
    ),
    "unclassified": Row(_req("GET", "/api/2.0/mlflow/webhooks"), "admin"),
    "graphql (tracking reads)": Row(
        _req("POST", "/graphql", json={"query": "{ __typename }"}), "any"
    ),
    "graphql (anything else)": Row(
        _req("POST", "/graphql", json={"query": "{ __schema { queryType { name } } }"}), "admin"
    ),
    "MLflow's UI page": Row(_req("GET", "/mlflow/"), "any", page=True),
    "MLflow's UI search": Row(
        _req("GET", "/mlflow/ajax-api/2.0/mlflow/registered-models/search"), "any"
    ),
    "MLflow's UI, unclassified": Row(_req("GET", "/mlflow/ajax-api/2.0/mlflow/webhooks"), "admin"),
    "MLflow's UI graphql": Row(
        _req("POST", "/mlflow/graphql", json={"query": "{ __typename }"}), "any"
    ),
}


def _walk(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:  # FastAPI's included routers
            yield from _walk(inner)
        else:
            yield route


async def _asgi_stub(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("never called")


def _declared_routes() -> set[tuple[str, str]]:
    app = build_api(None, _asgi_stub, (install_ui,))
    routes = {("POST", "/model/{name}/{ref}/invocations"), ("POST", "/model/{name}/invocations")}
    for route in _walk(app.routes):
        if isinstance(route, Mount):
            routes.add(("MOUNT", route.path or "/"))
            continue
        assert isinstance(route, APIRoute) or hasattr(route, "methods"), route
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                routes.add((method, route.path))
    return routes


def test_every_route_has_a_row() -> None:
    declared = _declared_routes()
    rows = {*MATRIX, ("MOUNT", "/")}  # the hosted registry: REGISTRY_ROWS
    assert declared - rows == set(), "routes without a row in the auth matrix"
    assert rows - declared == set(), "rows for routes that no longer exist"


# -- one server, its principals and their tokens ------------------------------------------------


@dataclass
class World:
    server: RegServeProcess
    headers: dict[str, dict[str, str]]
    tokens: dict[str, str]
    http: httpx.Client
    """Without default headers: each request carries only its caller's."""


def _admin(server: RegServeProcess, method: str, url: str, **kw: Any) -> dict[str, Any]:
    r = server.client.request(method, url, **kw)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _token_for(server: RegServeProcess, name: str, lifetime: int = 3600) -> str:
    data = _admin(
        server,
        "POST",
        "/api/2.0/token-management/on-behalf-of/tokens",
        json={"application_id": name, "lifetime_seconds": lifetime},
    )
    return str(data["token_value"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = RegServeProcess(tmp_path_factory.mktemp("auth") / "data").start()
    for name in ("nobody", "reader", "editor", "manager", "no-entitlement"):
        entitled = name == "manager"
        _admin(
            server,
            "POST",
            f"{SCIM}/Users",
            json={
                "userName": name,
                "entitlements": [{"value": "allow-cluster-create"}] if entitled else [],
            },
        )
    _admin(server, "POST", "/api/2.0/mlflow/registered-models/create", json={"name": MODEL})
    _admin(server, "PUT", f"{PERMS}/{MODEL}", json={"access_control_list": ACL})
    tokens = {
        n: _token_for(server, u)
        for n, u in (
            ("no permission", "nobody"),
            ("CAN_READ", "reader"),
            ("CAN_EDIT", "editor"),
            ("CAN_MANAGE", "manager"),
            ("no-entitlement", "no-entitlement"),
        )
    }
    tokens["admin"] = ADMIN_TOKEN
    expired = _token_for(server, "reader", lifetime=1)
    revoked = _token_for(server, "reader")
    r = httpx.post(
        f"{server.url}/api/2.0/token/list", headers={"Authorization": f"Bearer {revoked}"}
    )
    auth = {"Authorization": f"Bearer {revoked}"}
    listed = httpx.get(f"{server.url}/api/2.0/token/list", headers=auth).json()["token_infos"]
    newest = max(listed, key=lambda t: t["creation_time"])
    r = httpx.post(
        f"{server.url}/api/2.0/token/delete",
        json={"token_id": newest["token_id"]},
        headers={"Authorization": f"Bearer {revoked}"},
    )
    assert r.status_code == 200, r.text
    headers = {name: {"Authorization": f"Bearer {tok}"} for name, tok in tokens.items()}
    headers.update(
        {
            "no token": {},
            "malformed": {"Authorization": "Basic !!!"},
            "unknown": {"Authorization": "Bearer rsp_not-a-token"},
            "expired": {"Authorization": f"Bearer {expired}"},
            "revoked": {"Authorization": f"Bearer {revoked}"},
        }
    )
    time.sleep(1.1)  # the expired token's second is over
    _admin(server, "POST", f"{EP}/enable", **_MODEL_BODY)
    kept = Path(server.data_dir) / "logs" / MODEL / "1.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("the last log of a version that stopped being served\n")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield World(server, headers, tokens, http)
    server.close()


def _expected(row: Row, caller: str) -> tuple[int, str | None]:
    if row.needs == "open":
        return row.ok
    if caller in CREDENTIAL_FAILURES:
        return (303, None) if row.page else (401, "UNAUTHENTICATED")
    status, code = _allowed(row, caller)
    return (status, None) if row.page else (status, code)


def _allowed(row: Row, caller: str) -> tuple[int, str | None]:
    if row.needs == "any":
        return row.ok
    if row.needs == "admin":
        return row.ok if caller == "admin" else (403, "PERMISSION_DENIED")
    assert isinstance(row.needs, int)
    return row.ok if LEVELS[caller] >= row.needs else (403, "PERMISSION_DENIED")


def _check(world: World, row: Row, caller: str, what: str) -> str | None:
    spec = row.request()
    r = world.http.request(headers=world.headers[caller], **spec)
    status, code = _expected(row, caller)
    got_code = None
    if r.headers.get("content-type", "").startswith("application/json"):
        body = r.json()
        got_code = body.get("error_code") if isinstance(body, dict) else None
    if spec["url"].endswith("/disable") and r.status_code == 200:
        _admin(world.server, "POST", f"{EP}/enable", **_MODEL_BODY)
    if r.status_code != status or (code is not None and got_code != code):
        return f"{what} as {caller}: expected {status} {code}, got {r.status_code} {r.text[:200]}"
    return None


def test_matrix(world: World) -> None:
    problems = [
        _check(world, row, caller, f"{method} {path}")
        for (method, path), row in MATRIX.items()
        for caller in CALLERS
    ]
    problems += [
        _check(world, row, caller, what)
        for what, row in REGISTRY_ROWS.items()
        for caller in CALLERS
    ]
    failed = [p for p in problems if p]
    assert not failed, "\n".join(failed)


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_at_the_front_page_goes_to_the_ui(world: World) -> None:
    """``/`` belongs to no route of the matrix (the hosted registry's mount): a browser's page
    load goes to the UI whoever it is; an API client keeps the API's 401."""
    problems = []
    for caller in CALLERS:
        for method in ("GET", "HEAD"):
            headers = {**world.headers[caller], "Accept": BROWSER_ACCEPT}
            r = world.http.request(method, "/", headers=headers)
            if method == "GET":  # a page that goes on to the UI, or to MLflow's for a #/ link
                ok = r.status_code == 200 and '"/mlflow/" + location.hash' in r.text
            else:
                ok = (r.status_code, r.headers.get("location")) == (303, "/ui/")
            if not ok:
                problems.append(f"{method} / as {caller} from a browser: {r.status_code}")
        if caller not in CREDENTIAL_FAILURES:
            continue
        for accept in (None, "*/*", "application/json"):
            headers = {**world.headers[caller], **({"Accept": accept} if accept else {})}
            r = world.http.get("/", headers=headers)
            code = r.json().get("error_code") if r.status_code == 401 else None
            if code != "UNAUTHENTICATED":
                problems.append(f"GET / as {caller}, Accept {accept}: {r.status_code} {r.text}")
    assert not problems, "\n".join(problems)


def _client(world: World, caller: str) -> httpx.Client:
    return httpx.Client(base_url=world.server.url, headers=world.headers[caller], timeout=30)


def test_list_shows_only_readable_models(world: World) -> None:
    for caller, visible in (("no permission", []), ("CAN_READ", [MODEL]), ("admin", [MODEL])):
        with _client(world, caller) as c:
            names = [e["registered_model_name"] for e in c.get(f"{EP}/list").json()["endpoints"]]
            found = c.get("/api/2.0/mlflow/registered-models/search").json()
        assert names == visible, caller
        assert [m["name"] for m in found.get("registered_models", [])] == visible, caller


def test_enable_needs_the_cluster_create_entitlement(world: World) -> None:
    with _client(world, "no-entitlement") as c:
        r = c.post(f"{EP}/enable", **_MODEL_BODY)
    assert r.status_code == 403
    assert "allow-cluster-create" in r.json()["message"]


def test_basic_auth_and_audit_events_name_the_principal(world: World) -> None:
    auth = httpx.BasicAuth("token", world.tokens["CAN_MANAGE"])
    r = httpx.put(
        f"{world.server.url}{EP}/update-cluster-config",
        auth=auth,
        json={
            "registered_model_name": MODEL,
            "desired_cluster_config": {
                "node_type_id": "local-default",
                "tags": [{"key": "team", "value": "audit"}],
            },
        },
    )
    assert r.status_code == 200, r.text
    events = world.server.events(MODEL)
    updated = [e for e in events if e["event_type"] == "CLUSTER_CONFIG_UPDATED"]
    assert updated[-1]["principal"] == "manager"
    assert "by 'manager'" in updated[-1]["message"]
    enabled = [e for e in events if e["event_type"] == "SERVING_ENABLED"]
    assert enabled
    assert all(e.get("principal") for e in enabled)
    audit = world.server.client.get("/api/2.0/regserve/audit-events").json()["events"]
    kinds = {e["event_type"] for e in audit}
    assert {
        "TOKEN_CREATED",
        "TOKEN_REVOKED",
        "PERMISSIONS_CHANGED",
        "PRINCIPAL_CREATED",
        "SERVING_ENABLED",
        "SERVING_DISABLED",
        "CLUSTER_CONFIG_UPDATED",
    } <= kinds
    revoked = [e for e in audit if e["event_type"] == "TOKEN_REVOKED"]
    assert revoked[0]["principal"] == "reader"


def test_token_store_holds_hashes_only(world: World) -> None:
    import hashlib
    import sqlite3

    db = Path(world.server.data_dir) / "state.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT * FROM tokens").fetchall()
        everything = repr(rows) + repr(conn.execute("SELECT * FROM events").fetchall())
        hashes = {r[0] for r in conn.execute("SELECT token_hash FROM tokens")}
    assert len(rows) >= 7
    for value in [*world.tokens.values()]:
        assert value not in everything
        assert value.removeprefix("rsp_") not in everything
    for name, value in world.tokens.items():
        if name != "admin":  # the bootstrap token is configuration, not in the store
            assert hashlib.sha256(value.encode()).hexdigest() in hashes
    log = world.server.log_path.read_text()
    assert not any(value in log for value in world.tokens.values())
