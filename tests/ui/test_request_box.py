"""The request box (the Browser tab of "Call the model", as on Databricks): the logged example
one row a line, Format, invalid JSON kept from the model, the Curl and Python tabs beside it,
and no answer of another version (or of a stopped model) left on screen."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import TWO_MODEL, UiWorld, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

READY_MS = 120_000
ROW = re.compile(r"^ {6}\[[-\d.]+(, [-\d.]+){3}\],?$")  # one iris row of four numbers


def test_format_validate_and_clear_the_request_box(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    for version in ("1", "2"):
        ui_world.server.wait_version_state(TWO_MODEL, version, "VERSION_STATE_READY", timeout=180)
    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    page.goto(f"{ui_world.url}/ui/models/{TWO_MODEL}")
    expect(page.locator("#version-title")).to_have_text("Version 2")
    expect(page.locator("#version-state")).to_have_text("Ready", timeout=READY_MS)

    # the logged example: one data row a line, the columns on one line
    page.get_by_role("button", name="Show Example").click()
    request = page.get_by_label("Request")
    expect(request).to_have_value(re.compile("dataframe_split"))
    lines = request.input_value().splitlines()
    assert sum(bool(ROW.match(line)) for line in lines) == 3, lines
    assert any(line.strip().startswith('"columns": ["sepal_length", ') for line in lines), lines

    # invalid JSON is not sent
    invocations: list[str] = []
    page.on("request", lambda r: invocations.append(r.url) if "/invocations" in r.url else None)
    request.fill('{"dataframe_split": ')
    page.get_by_role("button", name="Send Request").click()
    expect(page.locator("#request-error")).to_contain_text("not valid JSON")
    page.wait_for_timeout(500)
    assert invocations == []
    expect(page.locator("#response-body")).to_be_empty()

    # Format lays out a valid body; then it is sent
    request.fill(
        '{"dataframe_records":[{"sepal_length":6.7,"sepal_width":3.1,'
        '"petal_length":5.2,"petal_width":2.3}]}'
    )
    page.get_by_role("button", name="Format").click()
    expect(page.locator("#request-error")).to_be_hidden()
    expect(request).to_have_value(
        '{\n  "dataframe_records": [\n    {"sepal_length": 6.7, "sepal_width": 3.1, '
        '"petal_length": 5.2, "petal_width": 2.3}\n  ]\n}'
    )
    page.get_by_role("button", name="Send Request").click()
    expect(page.locator("#response-status")).to_have_text("200")
    expect(page.locator("#response-latency")).to_contain_text("version 2")
    expect(page.locator("#response-body")).to_contain_text('"predictions"')

    # another version: the answer of version 2 goes
    page.locator('#version-list [data-version="1"]').click()
    expect(page.locator("#version-title")).to_have_text("Version 1")
    expect(page.locator("#response-body")).to_be_empty()
    expect(page.locator("#response-status")).to_be_empty()
    page.get_by_role("button", name="Send Request").click()
    expect(page.locator("#response-latency")).to_contain_text("version 1")

    # Browser, Curl, Python: one shown at a time; the request and its answer stay in Browser
    browser_tab = page.get_by_role("tab", name="Browser")
    expect(browser_tab).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Curl").click()
    expect(page.locator("#snippet-curl")).to_be_visible()
    expect(page.locator("#snippet-curl")).to_contain_text(f"/model/{TWO_MODEL}/1/invocations")
    expect(request).to_be_hidden()
    page.get_by_role("tab", name="Python").click()
    expect(page.locator("#snippet-python")).to_be_visible()
    expect(page.locator("#snippet-curl")).to_be_hidden()
    browser_tab.click()
    expect(request).to_be_visible()
    expect(page.locator("#response-latency")).to_contain_text("version 1")

    # stopping serving: the answer goes too
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("button", name="Stop serving").click()
    expect(page.get_by_role("button", name="Enable Serving")).to_be_visible(timeout=20_000)
    expect(page.locator("#response-body")).to_be_empty()
    expect(page.locator("#response-latency")).to_be_empty()
    assert page.console_errors == []
    page.context.close()
