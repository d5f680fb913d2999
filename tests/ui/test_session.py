"""Signing in from a browser: the cookie, where it counts, the CSRF rule, sign-out (HTTP only)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import BROKEN_MODEL, STORY_MODEL, UiWorld

pytestmark = pytest.mark.e2e

EP = "/api/2.0/preview/mlflow/endpoints"
CSRF = {"X-Requested-By": "regserve-ui"}
BAD_CONFIG = {
    "registered_model_name": STORY_MODEL,
    "desired_cluster_config": {"node_type_id": "no-such-type", "tags": []},
}


def _sign_in(http: httpx.Client, token: str, next_url: str = "/ui/") -> httpx.Response:
    form = http.get("/ui/signin", params={"next": next_url})
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return http.post("/ui/signin", data={"token": token, "csrf": csrf[1], "next": next_url})


def test_pages_redirect_to_sign_in_and_apis_answer_401(http: httpx.Client) -> None:
    r = http.get("/ui/models/x", params={"a": "1"})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/signin?next=%2Fui%2Fmodels%2Fx%3Fa%3D1"
    r = http.get(f"{EP}/list")
    assert r.status_code == 401
    assert r.json()["error_code"] == "UNAUTHENTICATED"
    assert http.get("/ui/static/ui.css").status_code == 200  # open: the sign-in page needs it


def test_sign_in_checks_the_form_and_the_token(http: httpx.Client) -> None:
    r = http.post("/ui/signin", data={"token": ADMIN_TOKEN, "csrf": "forged"})
    assert r.status_code == 403  # no sign-in cookie: a cross-site form
    assert "regserve_session" not in r.headers.get("set-cookie", "")
    r = _sign_in(http, "rsp_wrong")
    assert r.status_code == 401
    assert "That token is not valid." in r.text
    assert "regserve_session" not in http.cookies


def test_session_cookie_is_http_only_strict_and_works_where_the_ui_needs_it(
    http: httpx.Client,
) -> None:
    r = _sign_in(http, ADMIN_TOKEN, f"/ui/models/{STORY_MODEL}")
    assert r.status_code == 303
    assert r.headers["location"] == f"/ui/models/{STORY_MODEL}"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("regserve_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http here; https sets Secure
    assert "Max-Age=43200" in cookie  # REGSERVE_UI_SESSION_HOURS: 12 h by default
    assert ADMIN_TOKEN not in cookie  # a signed session, not the token
    assert http.get("/ui/").status_code == 200
    assert http.get(f"{EP}/list").status_code == 200
    info = http.get("/api/2.0/regserve/models/get", params={"registered_model_name": STORY_MODEL})
    assert info.json()["permission_level"] == "CAN_MANAGE"
    # MLflow's own API does not take the cookie: scripts use the Authorization header.
    assert http.get("/api/2.0/mlflow/registered-models/search").status_code == 401


def test_a_session_is_no_token_and_ends_with_its_token(
    http: httpx.Client, ui_world: UiWorld
) -> None:
    admin = ui_world.server.client
    made = admin.post("/api/2.0/token/create", json={"comment": "browser"}).json()
    assert _sign_in(http, made["token_value"]).status_code == 303
    session = http.cookies["regserve_session"]
    assert http.get(f"{EP}/list").status_code == 200
    # The cookie's value is not a token: the Authorization header does not take it.
    as_bearer = httpx.get(
        f"{ui_world.url}{EP}/list", headers={"Authorization": f"Bearer {session}"}
    )
    assert as_bearer.status_code == 401
    # A cookie holding a raw token (a forged or old-style session) is refused.
    with httpx.Client(base_url=ui_world.url, cookies={"regserve_session": ADMIN_TOKEN}) as raw:
        refused = raw.get(f"{EP}/list")
        assert refused.status_code == 401
        assert "sign in again" in refused.json()["message"]
    # Revoking the token ends the sessions signed in with it.
    revoke = admin.post("/api/2.0/token/delete", json={"token_id": made["token_info"]["token_id"]})
    assert revoke.status_code == 200, revoke.text
    assert http.get(f"{EP}/list").status_code == 401
    assert http.get("/ui/").status_code == 303


def test_cookie_requests_that_change_state_need_the_csrf_header(http: httpx.Client) -> None:
    assert _sign_in(http, ADMIN_TOKEN).status_code == 303
    r = http.put(f"{EP}/update-cluster-config", json=BAD_CONFIG)
    assert r.status_code == 403
    assert r.json()["error_code"] == "PERMISSION_DENIED"
    assert "X-Requested-By" in r.json()["message"]
    r = http.put(f"{EP}/update-cluster-config", json=BAD_CONFIG, headers=CSRF)
    assert r.status_code == 400  # past authentication: the node type is what is wrong
    assert "no-such-type" in r.json()["message"]


def test_authorization_header_requests_need_no_csrf_header(ui_world: UiWorld) -> None:
    r = httpx.put(
        f"{ui_world.url}{EP}/update-cluster-config",
        json=BAD_CONFIG,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 400


def test_sign_in_never_redirects_off_the_ui(http: httpx.Client) -> None:
    r = _sign_in(http, ADMIN_TOKEN, "https://evil.example/")
    assert r.headers["location"] == "/ui/"
    r = _sign_in(http, ADMIN_TOKEN, "//evil.example/ui/")
    assert r.headers["location"] == "/ui/"


def test_sign_out_clears_the_cookie(http: httpx.Client) -> None:
    assert _sign_in(http, ADMIN_TOKEN).status_code == 303
    assert http.post("/ui/signout").status_code == 403  # no CSRF header
    r = http.post("/ui/signout", headers=CSRF)
    assert r.status_code == 204
    assert "regserve_session" not in http.cookies
    assert http.get("/ui/").status_code == 303


def test_reader_sees_why_it_may_not_enable(http: httpx.Client, ui_world: UiWorld) -> None:
    auth = {"Authorization": f"Bearer {ui_world.reader_token}"}
    r = http.get(
        "/api/2.0/regserve/models/get", params={"registered_model_name": STORY_MODEL}, headers=auth
    )
    body = r.json()
    assert body["permission_level"] == "CAN_READ"
    assert "lacks CAN_MANAGE" in body["enable_refusal"]
    versions = body["registered_model"]["versions"]
    assert [v["version"] for v in versions] == ["1"]


def test_input_example_is_a_ready_request_body(http: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    params = {"registered_model_name": STORY_MODEL, "version": "1"}
    r = http.get("/api/2.0/regserve/models/get-input-example", params=params, headers=auth)
    assert r.status_code == 200, r.text
    example = r.json()["input_example"]
    assert example["dataframe_split"]["columns"] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    params["version"] = "99"
    r = http.get("/api/2.0/regserve/models/get-input-example", params=params, headers=auth)
    assert r.status_code == 404
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # a version logged without one: null, not an error (the UI asks for every version)
    params = {"registered_model_name": BROKEN_MODEL, "version": "1"}
    r = http.get("/api/2.0/regserve/models/get-input-example", params=params, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"input_example": None}
