"""The Serving page's Traffic tab in Chromium: a manager sets and resets the split through its
form, a config the API refuses shows the API's message and changes nothing, and a reader sees
the config with no way to change it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import BROKEN_MODEL, TWO_MODEL, UiWorld, screenshot, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TRAFFIC = "/api/2.0/regserve/endpoints/traffic"
SPLIT_70_30 = [{"ref": "1", "percent": 70}, {"ref": "2", "percent": 30}]


def _traffic(ui_world: UiWorld, model: str) -> dict[str, Any]:
    r = ui_world.server.client.get(TRAFFIC, params={"registered_model_name": model})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _put(ui_world: UiWorld, body: dict[str, Any]) -> None:
    r = ui_world.server.client.put(TRAFFIC, json={"registered_model_name": TWO_MODEL, **body})
    assert r.status_code == 200, r.text


def _updates(ui_world: UiWorld) -> list[dict[str, Any]]:
    events = ui_world.server.events(TWO_MODEL)
    return [e for e in events if e["event_type"] == "TRAFFIC_CONFIG_UPDATED"]


@pytest.fixture
def two_served(ui_world: UiWorld) -> Iterator[None]:
    """TWO_MODEL served with its versions READY and no traffic config, and none left after."""
    server = ui_world.server
    if server.versions(TWO_MODEL) == {}:  # another test may have stopped it
        assert server.enable(TWO_MODEL).status_code == 200
    for version in ("1", "2"):
        server.wait_version_state(TWO_MODEL, version, "VERSION_STATE_READY", timeout=180)
    _reset(ui_world)
    yield
    _reset(ui_world)


def _reset(ui_world: UiWorld) -> None:
    if not _traffic(ui_world, TWO_MODEL)["is_default"]:  # a reset is an event too
        _put(ui_world, {"routes": []})


def test_a_manager_sets_a_split_and_a_shadow_and_resets_it(
    browser: Any, ui_world: UiWorld, two_served: None
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    page.goto(f"{ui_world.url}/ui/models/{TWO_MODEL}")
    page.get_by_role("tab", name="Traffic").click()
    expect(page.locator("#traffic-note")).to_contain_text("No traffic config")
    expect(page.locator("#traffic-routes")).to_contain_text("No routes")
    page.get_by_role("button", name="Add route").click()
    expect(page.get_by_label("Ref of route 1")).to_be_focused()
    expect(page.get_by_label("Percent of route 1")).to_have_value("100")  # all of 100 is left
    page.get_by_label("Ref of route 1").fill("1")
    page.get_by_label("Percent of route 1").fill("70")
    expect(page.locator("#traffic-sum")).to_have_text("Sum: 70% (must be 100)")
    page.get_by_role("button", name="Add route").click()
    expect(page.get_by_label("Percent of route 2")).to_have_value("30")  # what route 1 leaves
    page.get_by_label("Ref of route 2").fill("2")
    expect(page.locator("#traffic-sum")).to_have_text("Sum: 100%")
    options = page.locator("#traffic-refs option")
    expect(options).to_have_count(3)  # versions 1 and 2, latest: the model's refs to pick
    page.get_by_label("Ref", exact=True).fill("latest")  # the shadow's
    page.get_by_label("Percent copied").fill("5")
    page.get_by_role("button", name="Save split").click()

    expect(page.locator("#traffic-result")).to_contain_text("Saved")
    table = page.locator("#traffic tbody tr")
    expect(table).to_have_count(3)
    expect(table.nth(0)).to_contain_text("70%")
    expect(table.nth(1)).to_contain_text("30%")
    expect(table.nth(2)).to_contain_text("latest (shadow)")
    expect(page.locator("#traffic-note")).to_be_hidden()
    update = "Traffic config set by 'admin': 1 70%, 2 30%; shadow latest 5%."
    expect(page.locator("#traffic-events")).to_contain_text(update)
    data = _traffic(ui_world, TWO_MODEL)
    assert (data["routes"], data["shadow"]) == (SPLIT_70_30, {"ref": "latest", "percent": 5})
    expect(page.locator("#split-url")).to_contain_text(f"/model/{TWO_MODEL}/invocations")
    screenshot(page, "traffic")
    page.get_by_role("tab", name="Model Events").click()
    expect(page.locator("#model-events")).to_contain_text(update)  # no reload either

    page.get_by_role("tab", name="Traffic").click()
    page.get_by_role("button", name="Reset to default").click()
    expect(page.locator("#confirm")).to_contain_text("Reset the traffic config?")
    page.locator("#confirm-ok").click()
    expect(page.locator("#traffic-result")).to_contain_text("Reset")
    expect(page.locator("#traffic-note")).to_contain_text("No traffic config")
    expect(page.locator("#traffic-routes")).to_contain_text("No routes")
    expect(page.get_by_label("Ref", exact=True)).to_have_value("")
    assert _traffic(ui_world, TWO_MODEL)["is_default"] is True
    assert page.console_errors == []
    page.context.close()


def test_a_split_the_api_refuses_shows_its_message_and_changes_nothing(
    browser: Any, ui_world: UiWorld, two_served: None
) -> None:
    from playwright.sync_api import expect

    _put(ui_world, {"routes": SPLIT_70_30})
    before = _updates(ui_world)
    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    page.goto(f"{ui_world.url}/ui/models/{TWO_MODEL}")
    page.get_by_role("tab", name="Traffic").click()
    expect(page.get_by_label("Percent of route 2")).to_have_value("30")  # the config, to edit
    page.get_by_label("Percent of route 2").fill("20")
    expect(page.locator("#traffic-sum")).to_have_text("Sum: 90% (must be 100)")
    page.get_by_role("button", name="Save split").click()

    error = page.get_by_role("alert").filter(has_text="INVALID_PARAMETER_VALUE")
    expect(error).to_have_text(
        "INVALID_PARAMETER_VALUE: The percents of routes add up to 90; they must add up to 100."
    )
    expect(page.locator("#traffic-result")).to_be_empty()
    expect(page.locator("#traffic tbody tr").nth(1)).to_contain_text("30%")
    expect(page.get_by_label("Percent of route 2")).to_have_value("20")  # kept, to fix
    assert _traffic(ui_world, TWO_MODEL)["routes"] == SPLIT_70_30
    assert _updates(ui_world) == before
    page.context.close()


def test_a_reader_sees_the_traffic_config_read_only(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ui_world.reader_token)
    page.goto(f"{ui_world.url}/ui/models/{BROKEN_MODEL}")
    expect(page.locator("#status-badge")).not_to_be_empty()  # the page has its rights
    page.get_by_role("tab", name="Traffic").click()
    expect(page.locator("#traffic-note")).to_contain_text("No traffic config")
    expect(page.locator("#traffic-reason")).to_have_text(
        "Changing the traffic config needs CAN_MANAGE; you hold CAN_READ."
    )
    expect(page.locator("#traffic-form")).to_be_hidden()
    for name in ("Add route", "Save split", "Reset to default"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_label("Percent copied")).to_be_hidden()
    expect(page.locator("#traffic-events")).to_be_visible()
    assert page.console_errors == []
    page.context.close()
