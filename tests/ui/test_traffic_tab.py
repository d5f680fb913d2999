"""The Serving page's Traffic tab in Chromium: the traffic config, read-only, and where
traffic goes now."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import TWO_MODEL, UiWorld, screenshot, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TRAFFIC = "/api/2.0/regserve/endpoints/traffic"


def test_the_traffic_tab_shows_the_split_and_the_shadow(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    server = ui_world.server
    if server.versions(TWO_MODEL) == {}:  # another test may have stopped it
        assert server.enable(TWO_MODEL).status_code == 200
    for version in ("1", "2"):
        server.wait_version_state(TWO_MODEL, version, "VERSION_STATE_READY", timeout=180)
    body = {
        "registered_model_name": TWO_MODEL,
        "routes": [{"ref": "1", "percent": 70}, {"ref": "2", "percent": 30}],
        "shadow": {"ref": "latest", "percent": 5},
    }
    assert server.client.put(TRAFFIC, json=body).status_code == 200
    try:
        page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
        page.goto(f"{ui_world.url}/ui/models/{TWO_MODEL}")
        page.get_by_role("tab", name="Traffic").click()
        table = page.locator("#traffic")
        expect(table.locator("tbody tr")).to_have_count(3)
        expect(table.locator("tbody tr").nth(0)).to_contain_text("70%")
        expect(table.locator("tbody tr").nth(1)).to_contain_text("30%")
        expect(table.locator("tbody tr").nth(2)).to_contain_text("latest (shadow)")
        expect(page.locator("#split-url")).to_contain_text(f"/model/{TWO_MODEL}/invocations")
        assert page.console_errors == []
        screenshot(page, "traffic")
        page.context.close()
    finally:
        reset = {"registered_model_name": TWO_MODEL, "routes": []}
        assert server.client.put(TRAFFIC, json=reset).status_code == 200
