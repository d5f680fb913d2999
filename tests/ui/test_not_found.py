"""Addresses that name nothing: real 404 pages that ask nothing; a model that is not served
asks only the routes that can answer (the browser's console stays clean)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import HTML_MODEL, STORY_MODEL, UiWorld, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _watch_failures(page: Any) -> list[str]:
    """Every response of the page that answered 400 or more, as 'status url'."""
    failures: list[str] = []
    page.on(
        "response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    return failures


def test_an_unknown_model_is_a_styled_404_that_polls_nothing(
    browser: Any, ui_world: UiWorld
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if "/api/" in r.url else None)
    url = f"{ui_world.url}/ui/models/does-not-exist"
    response = page.goto(url)
    assert response.status == 404
    expect(page.get_by_role("heading", name="Model not found")).to_be_visible()
    expect(page.locator("main")).to_contain_text(
        "Registered model 'does-not-exist' does not exist."
    )
    expect(page.get_by_role("link", name="Back to the registered models")).to_be_visible()
    expect(page.locator(".topbar")).to_have_css("display", "flex")  # the UI's stylesheet
    page.wait_for_timeout(5000)  # longer than the Serving page's refresh
    assert calls == []
    # Chromium reports the document's own status; nothing else (no script, no call) errs.
    assert page.console_errors == [
        f"Failed to load resource: the server responded with a status of 404 (Not Found) [{url}]"
    ]
    page.context.close()


def test_any_other_ui_address_is_a_styled_404(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    response = page.goto(f"{ui_world.url}/ui/anything-else")
    assert response.status == 404
    assert "text/html" in response.headers["content-type"]
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.locator(".topbar")).to_have_css("display", "flex")
    assert page.evaluate("fetch('/ui/static/ui.css').then((r) => r.status)") == 200
    page.context.close()


def test_a_model_not_enabled_asks_only_what_can_answer(browser: Any, ui_world: UiWorld) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    failures = _watch_failures(page)
    page.goto(f"{ui_world.url}/ui/models/{quote(HTML_MODEL, safe='')}")
    expect(page.get_by_role("button", name="Enable Serving")).to_be_visible()
    tabs = ("Model Events", "Metrics", "Traffic", "Inference Table", "Cluster Settings")
    for tab in (*tabs, "Model Versions"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(2500)
    page.get_by_role("tab", name="Model Events").click()
    expect(page.locator("#model-events")).to_contain_text("serving was never enabled")
    page.wait_for_timeout(4500)  # one more refresh
    assert failures == []
    assert page.console_errors == []
    page.context.close()


def test_the_front_page_in_a_browser_is_the_ui(browser: Any, ui_world: UiWorld) -> None:
    """``http://host:port/`` typed in a browser: the sign-in page, then the registered models
    (an API client there still gets the API's 401: tests/e2e/test_auth_matrix.py)."""
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{ui_world.url}/")
    assert page.url == f"{ui_world.url}/ui/signin?next=%2Fui%2F"
    page.get_by_label("Access token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{ui_world.url}/ui/")
    page.goto(f"{ui_world.url}/")  # signed in: straight to the registered models
    assert page.url == f"{ui_world.url}/ui/"
    expect(page.get_by_role("link", name=STORY_MODEL, exact=True)).to_be_visible()
    assert console_errors == []
    context.close()
