"""A version that stopped being served (archived, or serving disabled) keeps its last log:
readable with get-version-logs and in the UI's Logs tab; a version that never served, and a
model deleted and created again, have none (and the UI does not ask for them)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import UiWorld, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

MODEL = "ui-kept-logs"
SERVED_LINE = "listening on"  # the worker's line once it serves


def _logs(ui_world: UiWorld, version: str) -> Any:
    params = {"registered_model_name": MODEL, "endpoint_version_name": version}
    return ui_world.server.api("GET", "get-version-logs", params=params)


def _has_log(ui_world: UiWorld) -> dict[str, bool]:
    r = ui_world.server.client.get(
        "/api/2.0/regserve/models/get", params={"registered_model_name": MODEL}
    )
    assert r.status_code == 200, r.text
    return {v["version"]: v["has_log"] for v in r.json()["registered_model"]["versions"]}


def _wait_removed(ui_world: UiWorld, version: str) -> None:
    from tests.support.server import wait_for

    wait_for(lambda: version not in ui_world.server.versions(MODEL), 60, f"v{version} removed")


def _logs_tab(page: Any, ui_world: UiWorld, version: str) -> Any:
    from playwright.sync_api import expect

    page.goto("about:blank")  # a new hash alone would not load the page again
    page.goto(f"{ui_world.url}/ui/models/{MODEL}#logs-{version}")
    expect(page.get_by_role("tab", name="Logs")).to_have_attribute("aria-selected", "true")
    return page.locator("#logs")


def test_a_stopped_version_keeps_its_last_log(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    server, registry = ui_world.server, ui_world.registry
    assert [registry.register(MODEL), registry.register(MODEL, c=0.5)] == ["1", "2"]
    assert registry.register(MODEL, c=0.2) == "3"
    registry.stage(MODEL, "3", "Archived")  # never served
    assert server.enable(MODEL).status_code == 200
    for version in ("1", "2"):
        server.wait_version_state(MODEL, version, "VERSION_STATE_READY", timeout=180)

    # archived: it stops being served, its log stays
    registry.stage(MODEL, "1", "Archived")
    _wait_removed(ui_world, "1")
    r = _logs(ui_world, "1")
    assert r.status_code == 200, r.text
    assert SERVED_LINE in r.json()["logs"]
    assert set(r.json()) == {"logs"}  # Databricks' shape, as for a served version
    never = _logs(ui_world, "3")
    assert never.status_code == 404
    assert never.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "left no log" in never.json()["message"]
    assert _has_log(ui_world) == {"1": True, "2": True, "3": False}

    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    logs = _logs_tab(page, ui_world, "1")
    expect(logs).to_contain_text(SERVED_LINE)
    expect(page.locator("#logs-note")).to_have_text(
        "Version 1 is not served any more: this is the last log it left."
    )
    logs = _logs_tab(page, ui_world, "3")
    expect(logs).to_have_text("This version is not served and has not served: it has no log.")
    expect(page.locator("#logs-note")).to_be_hidden()

    # serving disabled: every version's log stays. (The page is closed meanwhile: a page that
    # saw the model served and asks for its versions just after another client disabled it
    # gets one 400, which is not what this test is about.)
    page.goto("about:blank")
    assert server.disable(MODEL).status_code == 200  # answers once the versions stopped
    r = _logs(ui_world, "2")
    assert r.status_code == 200, r.text
    assert SERVED_LINE in r.json()["logs"]
    logs = _logs_tab(page, ui_world, "2")
    expect(logs).to_contain_text(SERVED_LINE)
    expect(page.locator("#logs-note")).to_be_visible()
    page.wait_for_timeout(4500)  # one more refresh
    assert page.console_errors == []
    page.context.close()

    # a model deleted and created again under the name has none of the old one's logs
    registry.client.delete_registered_model(MODEL)
    registry.client.create_registered_model(MODEL)
    assert registry.register(MODEL) == "1"
    assert _logs(ui_world, "1").status_code == 404
    assert _has_log(ui_world) == {"1": False}
    # ... and when it is served, its version 1 does not log after the old one's lines: they
    # leave for logs/.deleted/ (for the administrator) as when a served model is deleted.
    assert server.enable(MODEL).status_code == 200
    retired = list((server.data_dir / "logs" / ".deleted").glob(f"*-{MODEL}"))
    assert len(retired) == 1, retired
    assert SERVED_LINE in (retired[0] / "2.log").read_text()
    assert server.disable(MODEL).status_code == 200
