"""The Serving page's Inference Table tab in Chromium: the model's captured requests, the
status filter, and what a reader sees."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.models import iris_frame
from tests.support.server import ADMIN_TOKEN
from tests.ui.conftest import BROKEN_MODEL, TWO_MODEL, UiWorld, screenshot, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CONFIG = "/api/2.0/preview/mlflow/endpoints/update-cluster-config"


def _capture(ui_world: UiWorld, on: bool) -> None:
    tags = [{"key": "regserve.inference_table", "value": "on"}] if on else []
    body = {
        "registered_model_name": TWO_MODEL,
        "desired_cluster_config": {"node_type_id": "local-default", "tags": tags},
    }
    assert ui_world.server.client.put(CONFIG, json=body).status_code == 200


def test_the_inference_tab_lists_captured_requests_and_filters_by_status(
    browser: Any, ui_world: UiWorld
) -> None:
    from playwright.sync_api import expect

    server = ui_world.server
    if server.versions(TWO_MODEL) == {}:  # another test may have stopped it
        assert server.enable(TWO_MODEL).status_code == 200
    server.wait_version_state(TWO_MODEL, "1", "VERSION_STATE_READY", timeout=180)
    _capture(ui_world, on=True)
    try:
        rows = {"dataframe_records": iris_frame()[0].head(2).to_dict(orient="records")}
        for _ in range(2):
            assert server.score(TWO_MODEL, "1", rows).status_code == 200
        bad = server.client.post(
            f"/model/{TWO_MODEL}/1/invocations",
            content=b"not json",
            headers={"Content-Type": "application/json", "X-Request-Id": "the-bad-one"},
        )
        assert bad.status_code == 400
        page = signed_in_page(browser, ui_world, ADMIN_TOKEN)
        page.goto(f"{ui_world.url}/ui/models/{TWO_MODEL}")
        page.get_by_role("tab", name="Inference Table").click()
        table = page.locator("#inference tbody tr")
        expect(table).to_have_count(3, timeout=20_000)  # written within seconds, then shown
        expect(page.locator("#inference-rate")).to_contain_text("Capturing 100%")
        status = page.locator("#inference-status")
        status.select_option("4xx")
        expect(table).to_have_count(1)
        expect(table.first).to_contain_text("the-bad-one")
        expect(table.first).to_contain_text("400")
        status.select_option("2xx")
        expect(table).to_have_count(2)
        status.select_option("5xx")
        expect(table).to_contain_text("No captured request has this status.")
        status.select_option("All")
        table.first.locator("summary").click()
        expect(table.first.locator("pre").first).to_contain_text("not json")
        assert page.console_errors == []
        screenshot(page, "inference")
        page.context.close()
        # a reader is told why, and the table (403 for them) is not asked
        reader = signed_in_page(browser, ui_world, ui_world.reader_token)
        reader.goto(f"{ui_world.url}/ui/models/{BROKEN_MODEL}")
        reader.get_by_role("tab", name="Inference Table").click()
        expect(reader.locator("#inference-note")).to_contain_text("Only callers with CAN_MANAGE")
        assert reader.console_errors == []
        reader.context.close()
    finally:
        _capture(ui_world, on=False)
