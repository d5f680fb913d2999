"""A 390 x 844 phone screen: events as cards with whole words, the snippet's Copy above it,
the Traffic tab's form within the screen."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import BROKEN_MODEL, UiWorld, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# Whole words of up to 30 characters drawn on more than one line (a longer one, a path or a
# setting's name, may break; a line may end after a hyphen or a slash, as text does).
SPLIT_WORDS = """(cells) => cells.flatMap((cell) => {
  const split = [];
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const words = /(?<![^\\s\\-\\/])[^\\s\\-\\/]{2,30}(?![^\\s\\-\\/])/g;
    for (const m of node.textContent.matchAll(words)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      if (tops.size > 1) split.push(m[0]);
    }
  }
  return split;
})"""


def test_events_are_cards_of_whole_words_and_copy_leaves_the_curl_visible(
    browser: Any, ui_world: UiWorld
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ADMIN_TOKEN, width=390)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{ui_world.url}/ui/models/{BROKEN_MODEL}")
    page.get_by_role("tab", name="Curl").click()
    expect(page.locator("#snippet-curl")).to_contain_text("curl -X POST")
    copy = page.locator("#panel-curl .copy").bounding_box()
    curl = page.locator("#snippet-curl").bounding_box()
    assert copy["y"] + copy["height"] <= curl["y"], (copy, curl)  # above, not on top

    page.get_by_role("tab", name="Model Events").click()
    events = page.locator("#model-events")
    expect(events).to_contain_text("SERVING_ENABLED")
    expect(events.locator("thead")).to_be_hidden()
    first = events.locator("tbody tr").first
    expect(first).to_have_css("display", "block")
    expect(first.locator("td").first).to_have_css("display", "block")
    assert page.evaluate(SPLIT_WORDS, events.locator("td").element_handles()) == []
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the screen"

    page.get_by_role("tab", name="Traffic").click()  # its form, a route in it (not saved)
    page.get_by_role("button", name="Add route").click()
    for field in ("Ref of route 1", "Percent of route 1", "Percent copied"):
        box = page.get_by_label(field).bounding_box()
        assert box["x"] >= 0, (field, box)
        assert box["x"] + box["width"] <= 390, (field, box)
    assert page.get_by_label("Ref of route 1").bounding_box()["width"] >= 100  # room for a ref
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the Traffic tab is {overflow} px wider than the screen"
    page.context.close()
