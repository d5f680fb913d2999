"""The Serving page in Chromium: the story a user lives through, a reader, and hostile names."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import (
    BROKEN_MODEL,
    HTML_DESCRIPTION,
    HTML_MODEL,
    STORY_MODEL,
    UiWorld,
    screenshot,
    signed_in_page,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

READY_S = 120_000  # ms: a version's worker loads sklearn and the model


def _open_model(page: Any, ui_world: UiWorld, name: str) -> None:
    page.goto(f"{ui_world.url}/ui/models/{quote(name, safe='')}")


def test_the_serving_story(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{ui_world.url}/ui/models/{STORY_MODEL}")
    expect(page.get_by_label("Access token")).to_be_visible()
    screenshot(page, "signin")
    page.get_by_label("Access token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{ui_world.url}/ui/models/{STORY_MODEL}")

    # enable serving from the page -> Pending, then Ready
    enable = page.get_by_role("button", name="Enable Serving")
    expect(enable).to_be_enabled()
    enable.click()
    expect(page.locator("#status-badge")).to_have_text("Ready", timeout=READY_S)
    expect(page.locator("#version-state")).to_have_text("Ready", timeout=READY_S)
    expect(page.locator("#status-message")).to_have_text("Serving 1 version (ready: v1).")
    expect(page.locator("#urls")).to_contain_text(f"/model/{STORY_MODEL}/Staging/invocations")
    expect(page.locator("#snippet-curl")).to_contain_text(f"/model/{STORY_MODEL}/1/invocations")

    # Show Example -> Send Request -> the prediction, its status and latency
    page.get_by_role("button", name="Show Example").click()
    request = page.get_by_label("Request")
    expect(request).to_have_value(_contains("dataframe_split"))
    send = page.get_by_role("button", name="Send Request")
    expect(send).to_be_enabled()
    send.click()
    expect(page.locator("#response-status")).to_have_text("200")
    expect(page.locator("#response-body")).to_contain_text('"predictions"')
    expect(page.locator("#response-latency")).to_contain_text("ms")

    # the refresh keeps what the user typed
    request.fill('{"dataframe_records": [{"typed": "by hand"}]}')
    page.wait_for_timeout(5000)  # more than one refresh
    expect(request).to_have_value('{"dataframe_records": [{"typed": "by hand"}]}')

    # a stage moved in the registry shows on the page by itself
    ui_world.registry.stage(STORY_MODEL, "1", "Production")
    expect(page.locator("#version-list")).to_contain_text("Production", timeout=20_000)
    expect(page.locator("#urls")).to_contain_text(
        f"/model/{STORY_MODEL}/Production/invocations", timeout=20_000
    )
    expect(page.locator("#logs")).to_contain_text("listening on")
    screenshot(page, "versions")
    page.get_by_role("tab", name="Version Events").click()
    expect(page.locator("#version-events")).to_contain_text("VERSION_READY")

    page.get_by_role("tab", name="Model Events").click()
    events = page.locator("#model-events")
    expect(events).to_contain_text("SERVING_ENABLED")
    expect(events.locator("thead")).to_contain_text("Event Type")
    screenshot(page, "events")

    page.get_by_role("tab", name="Metrics").click()
    expect(page.locator("#charts figure")).to_have_count(6)
    expect(page.locator("#charts path.series").first).to_be_attached(timeout=10_000)
    screenshot(page, "metrics")

    _change_cluster_settings(page, ui_world)

    # the model list shows the serving state
    page.get_by_role("link", name="Registered models").first.click()
    row = page.get_by_role("row").filter(has_text=STORY_MODEL)
    expect(row).to_contain_text("Ready")
    screenshot(page, "models")
    page.get_by_role("link", name=STORY_MODEL, exact=True).click()

    # Stop, confirmed
    page.get_by_role("button", name="Stop").click()
    confirm = page.get_by_role("button", name="Stop serving")
    expect(confirm).to_have_css("background-color", "rgb(196, 58, 58)")  # red: it stops
    confirm.click()
    expect(page.get_by_role("button", name="Enable Serving")).to_be_visible(timeout=20_000)
    r = ui_world.server.api("GET", "get-status", params={"registered_model_name": STORY_MODEL})
    assert r.status_code == 400  # serving is off

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    expect(page.get_by_label("Access token")).to_be_visible()
    assert console_errors == []  # a whole walk: enable, every tab, stop, sign out
    context.close()


def _change_cluster_settings(page: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Cluster Settings").click()
    select = page.get_by_label("Instance Type")
    expect(select).to_contain_text("2 GB Memory, 1 core)")
    expect(select).not_to_contain_text("Cores")
    expect(page.locator("#instance-note")).to_contain_text("the local backend enforces it")
    expect(page.locator("#instance-note")).not_to_contain_text("not enforce")
    select.select_option("local-small")
    for key, value in (("team", "ui"), ("temporary", "x")):
        page.get_by_label("Key", exact=True).fill(key)
        page.get_by_label("Value", exact=True).fill(value)
        page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_role("button", name="Edit tag team").click()
    page.get_by_label("Tag value").fill("ui-edited")
    page.get_by_role("button", name="Done").click()
    page.get_by_role("button", name="Delete tag temporary").click()
    page.get_by_label("Key", exact=True).fill("team")  # already there: refused
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#tag-error")).to_contain_text("There is already a tag 'team'")
    expect(page.locator("#tags tbody tr")).to_have_count(1)
    page.wait_for_timeout(4500)  # a refresh must not undo unsaved edits
    expect(page.locator("#tags")).to_contain_text("ui-edited")
    screenshot(page, "cluster")
    page.get_by_role("button", name="Save", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("The versions keep serving from the running cluster")
    expect(dialog).not_to_contain_text("terminated")
    expect(dialog).not_to_contain_text("unavailable")
    screenshot(page, "cluster-confirm")
    dialog.get_by_role("button", name="Save", exact=True).click()
    update = page.locator("#cluster-update")
    expect(update).to_contain_text("Updating cluster: local-default -> local-small")
    expect(update).to_be_hidden(timeout=READY_S)  # done: the new cluster serves
    expect(page.locator("#cluster-result")).to_contain_text("Saved")
    expect(page.locator("#tag-error")).to_be_hidden()  # the refused Add is old news
    status = ui_world.server.status(STORY_MODEL)
    config = status.get("desired_cluster_config") or status["actual_cluster_config"]
    assert config == {
        "node_type_id": "local-small",
        "tags": [{"key": "team", "value": "ui-edited"}],
    }


def _contains(text: str) -> re.Pattern[str]:
    return re.compile(re.escape(text))


def test_a_reader_sees_enable_disabled_with_the_reason(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ui_world.reader_token)
    _open_model(page, ui_world, HTML_MODEL)
    enable = page.get_by_role("button", name="Enable Serving")
    expect(enable).to_be_disabled()
    expect(page.locator("#enable-reason")).to_contain_text("lacks CAN_MANAGE")
    expect(page.locator("#enable-reason")).to_be_visible()
    screenshot(page, "reader")
    page.context.close()


def test_a_reader_sees_the_cluster_read_only(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ui_world.reader_token)
    _open_model(page, ui_world, BROKEN_MODEL)
    expect(page.locator("#status-badge")).not_to_be_empty()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.locator("#enable-reason")).to_contain_text("Stopping serving needs CAN_MANAGE")
    page.get_by_role("tab", name="Cluster Settings").click()
    expect(page.locator("#tags")).to_contain_text("team")
    expect(page.get_by_label("Instance Type")).to_be_disabled()
    expect(page.get_by_role("button", name="Edit tag team")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete tag team")).to_have_count(0)
    expect(page.get_by_role("button", name="Add", exact=True)).to_be_hidden()
    expect(page.get_by_label("Key", exact=True)).to_be_hidden()
    expect(page.get_by_role("button", name="Save", exact=True)).to_be_hidden()
    expect(page.locator("#cluster-reason")).to_contain_text("Changing the cluster needs CAN_MANAGE")
    page.context.close()


def test_names_and_descriptions_with_html_render_as_text(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    expect(page.get_by_role("link", name=HTML_MODEL, exact=True)).to_be_visible()
    page.get_by_role("link", name=HTML_MODEL, exact=True).click()
    expect(page.locator("h1.model-name")).to_have_text(HTML_MODEL)
    expect(page.locator("#description")).to_have_text(HTML_DESCRIPTION)
    assert page.locator("main img, main script, main b").count() == 0
    page.wait_for_timeout(1000)
    assert dialogs == []
    page.context.close()


def test_the_page_fits_a_narrow_screen(browser: Any, ui_world: UiWorld) -> None:
    page = signed_in_page(browser, ui_world, ADMIN_TOKEN, width=390)
    _open_model(page, ui_world, STORY_MODEL)
    page.locator("#version-list button").first.wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a 390 px screen"
    screenshot(page, "narrow")
    page.context.close()
