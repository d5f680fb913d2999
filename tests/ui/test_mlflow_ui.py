"""MLflow's own web UI at /mlflow/: signed in through regserve, showing what the caller may read,
and the links MLflow prints and regserve's model pages lead there (Chromium and HTTP)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import STORY_MODEL, TWO_MODEL, UiWorld, screenshot, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHARED = "ui-mlflow-shared"  # the viewer may read it
HIDDEN = "ui-mlflow-hidden"  # the viewer may not
SEARCH = "/mlflow/ajax-api/2.0/mlflow/registered-models/search"
PRINTED = re.compile(r"View run (\S+) at: (\S+)")


@dataclass(frozen=True)
class LoggedRun:
    name: str
    link: str
    """What MLflow printed: ``<tracking URI>/#/experiments/<id>/runs/<id>``."""
    run_id: str


@pytest.fixture(scope="module")
def logged_run(ui_world: UiWorld) -> LoggedRun:
    """A run logged by the admin with MLflow's client, one version of it registered in a model
    the viewer may read and one in a model it may not."""
    client = MlflowClient(tracking_uri=ui_world.url, registry_uri=ui_world.url)
    run = client.create_run("0", run_name="mlflow-ui-run")
    client.log_param(run.info.run_id, "alpha", "0.5")
    printed = _printed(lambda: client.set_terminated(run.info.run_id))
    found = PRINTED.search(printed)
    assert found is not None, printed
    for model in (SHARED, HIDDEN):
        client.create_registered_model(model)
        client.create_model_version(model, f"runs:/{run.info.run_id}/model", run.info.run_id)
    r = ui_world.server.client.patch(
        f"/api/2.0/permissions/registered-models/{SHARED}",
        json={"access_control_list": [{"user_name": "viewer", "permission_level": "CAN_READ"}]},
    )
    assert r.status_code == 200, r.text
    return LoggedRun(found[1], found[2], run.info.run_id)


def _printed(action: Any) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        action()
    return out.getvalue()


@pytest.fixture
def viewer_http(ui_world: UiWorld) -> Iterator[httpx.Client]:
    """The viewer signed in through the form: a session cookie, no token."""
    with httpx.Client(base_url=ui_world.url, timeout=30) as client:
        form = client.get("/ui/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        data = {"token": ui_world.reader_token, "csrf": csrf[1], "next": "/mlflow/"}
        r = client.post("/ui/signin", data=data)
        assert (r.status_code, r.headers["location"]) == (303, "/mlflow/")
        yield client


# -- HTTP --------------------------------------------------------------------------------------


def test_the_page_signs_in_first_and_its_calls_answer_401(http: httpx.Client) -> None:
    r = http.get("/mlflow/")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/signin?next=%2Fmlflow%2F")
    r = http.get(SEARCH)
    assert r.status_code == 401
    assert r.json()["error_code"] == "UNAUTHENTICATED"


def test_the_session_cookie_reads_only_what_the_viewer_may(
    viewer_http: httpx.Client, logged_run: LoggedRun
) -> None:
    page = viewer_http.get("/mlflow/")
    assert page.status_code == 200
    assert '<div id="root"' in page.text  # MLflow's own index.html
    assert '<script src="/ui/static/mlflow.js" defer></script></head>' in page.text
    assert viewer_http.get("/ui/static/mlflow.js").status_code == 200
    assert viewer_http.get("/mlflow/static-files/favicon.ico").status_code == 200
    names = {m["name"] for m in viewer_http.get(SEARCH).json()["registered_models"]}
    assert {SHARED, STORY_MODEL} <= names
    assert not {HIDDEN, TWO_MODEL} & names
    r = viewer_http.get(
        "/mlflow/ajax-api/2.0/mlflow/registered-models/get", params={"name": HIDDEN}
    )
    assert r.status_code == 403
    # The cookie is credentials under /mlflow/ only: MLflow's API at its own paths wants a token.
    assert viewer_http.get("/ajax-api/2.0/mlflow/registered-models/search").status_code == 401


def test_calls_that_change_state_need_the_header_mlflow_s_page_sends(
    viewer_http: httpx.Client,
) -> None:
    page = viewer_http.get("/mlflow/")
    cookie = next(
        c for c in page.headers.get_list("set-cookie") if c.startswith("mlflow-request-header-")
    )
    assert cookie.startswith("mlflow-request-header-X-Requested-By=")
    assert "HttpOnly" not in cookie  # MLflow's JavaScript reads it
    body = {"experiment_ids": ["0"], "max_results": 1}
    url = "/mlflow/ajax-api/2.0/mlflow/runs/search"
    r = viewer_http.post(url, json=body)
    assert r.status_code == 403
    assert "X-Requested-By" in r.json()["message"]
    r = viewer_http.post(url, json=body, headers={"X-Requested-By": "mlflow-ui"})
    assert r.status_code == 200, r.text
    # A browser that kept the page (and lost the cookie) still gets it: never a 304.
    again = viewer_http.get("/mlflow/", headers={"If-None-Match": "*"})
    assert again.status_code == 200
    assert "etag" not in again.headers
    assert any(c.startswith("mlflow-request-header-") for c in again.headers.get_list("set-cookie"))


def test_the_page_s_own_origin_passes_mlflow_s_origin_check(viewer_http: httpx.Client) -> None:
    """MLflow refuses state-changing calls from origins other than localhost ones: its page
    under another name (here a private address, which MLflow's Host check lets in) is this
    request's own origin and passes; another site's does not."""
    host = "10.0.0.5:8080"
    body = {"experiment_ids": ["0"], "max_results": 1}
    seen = {}
    for origin in (f"http://{host}", "http://elsewhere.example"):
        headers = {"Host": host, "Origin": origin, "X-Requested-By": "mlflow-ui"}
        r = viewer_http.post("/mlflow/ajax-api/2.0/mlflow/runs/search", json=body, headers=headers)
        seen[origin] = r.status_code
    assert seen == {f"http://{host}": 200, "http://elsewhere.example": 403}


def test_graphql_gives_the_run_page_and_cuts_its_models(
    ui_world: UiWorld, logged_run: LoggedRun
) -> None:
    query = (
        "query GetRun($data: MlflowGetRunInput!) { mlflowGetRun(input: $data) "
        "{ run { info { runName } modelVersions { name version } } } }"
    )
    body = {"query": query, "variables": {"data": {"runId": logged_run.run_id}}}
    seen = {}
    for who, token in (("viewer", ui_world.reader_token), ("admin", ADMIN_TOKEN)):
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"{ui_world.url}/mlflow/graphql", json=body, headers=auth)
        assert r.status_code == 200, r.text
        run = r.json()["data"]["mlflowGetRun"]["run"]
        assert run["info"]["runName"] == logged_run.name
        seen[who] = sorted(v["name"] for v in run["modelVersions"])
    assert seen == {"viewer": [SHARED], "admin": [HIDDEN, SHARED]}
    files = {"query": '{ mlflowListArtifacts(input: {runId: "x"}) { rootUri } }'}
    auth = {"Authorization": f"Bearer {ui_world.reader_token}"}
    r = httpx.post(f"{ui_world.url}/graphql", json=files, headers=auth)
    assert r.status_code == 403


def test_a_browser_at_root_is_sent_on_and_api_clients_are_not(http: httpx.Client) -> None:
    r = http.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 200
    assert '"/mlflow/" + location.hash' in r.text
    assert "script-src 'sha256-" in r.headers["content-security-policy"]
    r = http.get("/", headers={"Accept": "application/json"})
    assert r.status_code == 401
    assert r.json()["error_code"] == "UNAUTHENTICATED"


# -- Chromium ----------------------------------------------------------------------------------


def test_the_printed_run_link_lands_on_the_run_page(
    browser: Any, ui_world: UiWorld, logged_run: LoggedRun
) -> None:
    from playwright.sync_api import expect

    assert logged_run.link.startswith(f"{ui_world.url}/#/experiments/0/runs/")
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.goto(logged_run.link)  # not signed in: sign-in first, the run's fragment kept
    page.wait_for_url(re.compile(r".*/ui/signin\?next=%2Fmlflow%2F#/experiments/0/runs/.*"))
    page.get_by_label("Access token").fill(ui_world.reader_token)
    page.get_by_role("button", name="Sign in").click()
    run_path = logged_run.link.removeprefix(ui_world.url + "/")
    page.wait_for_url(f"{ui_world.url}/mlflow/{run_path}")
    main = page
    expect(main.get_by_role("heading", name=logged_run.name)).to_be_visible(timeout=30_000)
    expect(main.get_by_text(logged_run.run_id)).to_be_visible()
    # Registered from this run: the model the viewer may read, never the other.
    expect(main.get_by_role("link", name=SHARED)).to_be_visible()
    expect(main.get_by_text(HIDDEN)).to_have_count(0)
    page.context.close()


def test_a_browser_at_root_without_a_fragment_goes_to_the_ui(
    browser: Any, ui_world: UiWorld
) -> None:
    page = browser.new_context().new_page()
    page.goto(f"{ui_world.url}/")
    page.wait_for_url(f"{ui_world.url}/ui/signin?next=%2Fui%2F")
    page.context.close()


def test_mlflow_s_model_list_shows_only_readable_models(
    browser: Any, ui_world: UiWorld, logged_run: LoggedRun
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ui_world.reader_token, width=1400)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="MLflow").click()
    page.wait_for_url(f"{ui_world.url}/mlflow/")
    page.goto(f"{ui_world.url}/mlflow/#/models")
    table = page
    expect(table.get_by_role("link", name=SHARED, exact=True)).to_be_visible(timeout=30_000)
    expect(table.get_by_role("link", name=STORY_MODEL, exact=True)).to_be_visible()
    expect(table.get_by_text(HIDDEN)).to_have_count(0)
    expect(table.get_by_text(TWO_MODEL)).to_have_count(0)
    page.context.close()


def test_a_model_page_links_to_its_registry_page(
    browser: Any, ui_world: UiWorld, logged_run: LoggedRun
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ui_world.reader_token, width=1400)
    page.goto(f"{ui_world.url}/ui/models/{SHARED}")
    link = page.get_by_role("link", name="Registry page in MLflow")
    expect(link).to_have_attribute("href", f"/mlflow/#/models/{SHARED}")
    link.click()
    page.wait_for_url(f"{ui_world.url}/mlflow/#/models/{SHARED}")
    main = page
    expect(main.get_by_role("heading", name=SHARED)).to_be_visible(timeout=30_000)
    expect(main.get_by_role("link", name="Version 1")).to_be_visible()
    # And back: the link regserve adds to MLflow's page follows the model shown.
    back = page.locator("#regserve-back")
    expect(back).to_have_text("◆ Serving page in regserve")
    screenshot(page, "mlflow-model")
    back.click()
    page.wait_for_url(f"{ui_world.url}/ui/models/{SHARED}")
    expect(page.get_by_role("heading", name=SHARED)).to_be_visible()
    page.goto(f"{ui_world.url}/mlflow/#/experiments")
    expect(back).to_have_attribute("href", "/ui/")
    page.context.close()
