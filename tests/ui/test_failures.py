"""A version that cannot start, as the UI shows it: its cause in one line, its log one click
away; the model list, the status card, the version header and the events say the same."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import BROKEN_CAUSE, BROKEN_MODEL, TWO_MODEL, UiWorld, signed_in_page


@pytest.fixture
def failed(ui_world: UiWorld) -> None:
    ui_world.server.wait_version_state(BROKEN_MODEL, "1", "VERSION_STATE_FAILED", timeout=180)


@pytest.mark.e2e
@pytest.mark.browser
def test_a_failed_version_shows_its_cause_and_links_to_its_log(
    browser: Any, ui_world: UiWorld, failed: None
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    row = page.get_by_role("row").filter(has_text=BROKEN_MODEL)
    expect(row).to_contain_text(f"Every version failed (failed: v1). {BROKEN_CAUSE}")
    expect(row).not_to_contain_text("^^^")
    expect(row).not_to_contain_text("Traceback")
    row.get_by_role("link", name="Full log").click()
    page.wait_for_url(f"{ui_world.url}/ui/models/{BROKEN_MODEL}#logs-1")
    expect(page.get_by_role("tab", name="Logs")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#logs")).to_contain_text("Traceback (most recent call last)")

    status = page.locator("#status-message")
    expect(status).to_have_text(f"Every version failed (failed: v1). {BROKEN_CAUSE} Full log")
    version = page.locator("#version-message")
    expect(version).to_have_text(f"{BROKEN_CAUSE} Full log")
    expect(version.get_by_role("link", name="Full log")).to_be_visible()

    page.get_by_role("tab", name="Model Events").click()
    failed_row = page.locator("#model-events tr").filter(has_text="VERSION_FAILED")
    expect(failed_row).to_contain_text(BROKEN_CAUSE)
    expect(failed_row).not_to_contain_text("^^^")
    failed_row.get_by_role("link", name="Full log").click()  # back to the log, in the page
    expect(page.get_by_role("tab", name="Model Versions")).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.locator("#logs")).to_contain_text("Traceback (most recent call last)")
    page.context.close()


TRACEBACK_TAIL = (
    "Worker pid 7 exited with code 3 (the model could not be loaded); it crashed 4 times in a "
    'row. Last log lines:\n           ^^^^^^^^^^\n  File "<dynamic-code>", line 157, in load\n'
    f"{BROKEN_CAUSE}\n2026-12-03 11:56:38,175 ERROR regserve.worker [pid 7]: model failed to load"
)


def test_headline_is_the_last_exception_line_of_the_log_tail() -> None:
    from regserve.ui.failures import Headline, headline

    assert headline(TRACEBACK_TAIL, "3") == Headline(BROKEN_CAUSE, "3")
    endpoint = f"Every version failed (failed: v2, v3). {TRACEBACK_TAIL}"
    assert headline(endpoint) == Headline(
        f"Every version failed (failed: v2, v3). {BROKEN_CAUSE}", "2"
    )
    killed = "Worker pid 7 was killed by SIGKILL; it crashed 4 times in a row. Last log lines:\nx"
    assert headline(killed, "1") == Headline(
        "Worker pid 7 was killed by SIGKILL; it crashed 4 times in a row.", "1"
    )
    assert headline("Serving 1 of 2 versions (ready: v1; failed: v2).") == Headline(
        "Serving 1 of 2 versions (ready: v1; failed: v2)."
    )


@pytest.mark.e2e
@pytest.mark.browser
def test_a_version_without_an_input_example_says_so_without_an_error(
    browser: Any, ui_world: UiWorld, failed: None
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    page.goto(f"{ui_world.url}/ui/models/{BROKEN_MODEL}")
    expect(page.locator("#snippet-curl")).to_contain_text(f"/model/{BROKEN_MODEL}/1/invocations")
    page.get_by_role("button", name="Show Example").click()
    expect(page.locator("#send-hint")).to_have_text(
        "Version 1 was logged without an input example."
    )
    page.wait_for_timeout(4500)  # one more refresh
    assert page.console_errors == []
    page.context.close()


_MODEL_TABS = (
    "Model Events",
    "Metrics",
    "Traffic",
    "Inference Table",
    "Cluster Settings",
    "Model Versions",
)
_VERSION_TABS = ("Curl", "Python", "Browser", "Version Events", "Logs")


@pytest.mark.e2e
@pytest.mark.browser
def test_every_tab_of_a_failed_and_a_served_model_keeps_the_console_clean(
    browser: Any, ui_world: UiWorld, failed: None
) -> None:
    """The walk of issue 21 for a failed model and a served one (the served story, the model
    not enabled and the unknown one have theirs: test_serving_page.py, test_not_found.py):
    every tab and sub-tab, Show Example, a refresh; no call answers 400 or more, no console
    error."""
    from playwright.sync_api import expect

    ui_world.server.wait_version_state(TWO_MODEL, "2", "VERSION_STATE_READY", timeout=180)
    page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
    failures: list[str] = []
    page.on(
        "response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    # the broken model was logged without an input example (the test above)
    for model, state in ((TWO_MODEL, "Ready"), (BROKEN_MODEL, "Failed")):
        page.goto(f"{ui_world.url}/ui/models/{model}")
        expect(page.locator("#version-state")).to_have_text(state)
        for tab in _MODEL_TABS:
            page.get_by_role("tab", name=tab, exact=True).click()
            expect(page.get_by_role("tab", name=tab, exact=True)).to_have_attribute(
                "aria-selected", "true"
            )
        for tab in _VERSION_TABS:
            page.get_by_role("tab", name=tab, exact=True).click()
        page.get_by_role("button", name="Show Example").click()
        if model == TWO_MODEL:
            expect(page.get_by_label("Request", exact=True)).to_have_value(
                re.compile("dataframe_split")
            )
        else:
            expect(page.locator("#send-hint")).to_contain_text("without an input example")
        page.wait_for_timeout(4500)  # one refresh of the page
    assert failures == []
    assert page.console_errors == []
    page.context.close()
