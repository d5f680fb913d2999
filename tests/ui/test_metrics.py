"""The Metrics tab: counts per minute with idle minutes at zero and whole-number ticks, an
x-axis that ends at now, a 1 h / 6 h / 24 h range, and the batch size and queue depth."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import TWO_MODEL, UiWorld, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
CLOCKS = """(ms) => [0, 60000].map((back) => new Date(Date.now() - ms - back)
  .toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }))"""


def _labels(figure: Any) -> list[str]:
    return [str(t) for t in figure.locator("text.axis").all_text_contents()]


def test_metrics_fill_idle_minutes_end_at_now_and_change_range(
    browser: Any, ui_world: UiWorld
) -> None:
    from playwright.sync_api import expect

    server = ui_world.server
    if server.versions(TWO_MODEL) == {}:  # another test may have stopped it
        assert server.enable(TWO_MODEL).status_code == 200
    server.wait_version_state(TWO_MODEL, "1", "VERSION_STATE_READY", timeout=180)
    for _ in range(3):
        assert server.score(TWO_MODEL, "1", {"dataframe_records": [ROW]}).status_code == 200
    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    page.goto(f"{ui_world.url}/ui/models/{TWO_MODEL}")
    page.get_by_role("tab", name="Metrics").click()
    requests = page.locator("#charts figure").filter(has_text="Requests per minute")
    line = requests.locator('path.series[data-version="1"]')
    expect(line).to_be_attached(timeout=15_000)

    # an hour of minutes, the idle ones at zero: one unbroken line across the chart
    path = str(line.get_attribute("d"))
    assert path.count("M") == 1, path
    assert path.count("L") >= 59, path
    # whole-number ticks on counts
    for name in ("Requests per minute", "Errors per minute"):
        ticks = _labels(page.locator("#charts figure").filter(has_text=name))[:-3]
        assert ticks, name
        assert all(re.fullmatch(r"\d+", t) for t in ticks), (name, ticks)
    # the queue depth is a count too: idle minutes at zero, whole-number ticks
    queue = page.locator("#charts figure").filter(has_text="Queue depth")
    queue_line = queue.locator('path.series[data-version="1"]')
    expect(queue_line).to_be_attached()
    assert str(queue_line.get_attribute("d")).count("M") == 1
    ticks = _labels(queue)[:-3]
    assert ticks
    assert all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    # the batch size is a mean: drawn where batches ran, on ticks that may be fractional
    batches = page.locator("#charts figure").filter(has_text="Batch size")
    expect(batches.locator('path.series[data-version="1"]')).to_be_attached()
    label = str(batches.locator("svg").get_attribute("aria-label"))
    assert re.search(r"version 1: latest \d+(\.\d+)? requests per batch", label), label
    assert any("." in t for t in _labels(batches)[:-3]), _labels(batches)
    # the x-axis ends at now and starts an hour before
    axis = _labels(requests)[-3:]
    assert axis[-1] in page.evaluate(CLOCKS, 0), axis
    assert axis[0] in page.evaluate(CLOCKS, 3600_000), axis

    range_6h = page.get_by_role("button", name="6 h")
    range_6h.click()
    expect(range_6h).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="1 h")).to_have_attribute("aria-pressed", "false")
    axis = _labels(requests)[-3:]
    assert axis[0] in page.evaluate(CLOCKS, 6 * 3600_000), axis
    assert str(line.get_attribute("d")).count("L") >= 6 * 60 - 1
    assert page.console_errors == []
    page.context.close()
