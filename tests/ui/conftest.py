"""One ``regserve up`` for the UI's tests, with a story model, a model named in HTML and a reader.

The browser tests drive Debian's Chromium (``/usr/bin/chromium``) through Playwright; without
it they skip through ``require_service`` (a failure in CI).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_service
from tests.support.models import log_broken_version
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess

CHROMIUM = "/usr/bin/chromium"
STORY_MODEL = "ui-story"
BROKEN_MODEL = "ui-broken"  # enabled by the fixture: its only version fails to load
TWO_MODEL = "ui-two"  # enabled by the fixture: two iris versions
BROKEN_CAUSE = "RuntimeError: deliberately broken model: cannot load weights.bin"
HTML_MODEL = "<img src=x onerror=alert(1)>&amp; \"quoted\" 'model'"
HTML_DESCRIPTION = "<script>alert('description')</script><b>not bold</b>"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


@dataclass
class UiWorld:
    server: RegServeProcess
    registry: UserRegistry
    reader_token: str

    @property
    def url(self) -> str:
        return self.server.url


def _admin(server: RegServeProcess, method: str, url: str, **kw: Any) -> dict[str, Any]:
    r = server.client.request(method, url, **kw)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="package")
def ui_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiWorld]:
    server = RegServeProcess(tmp_path_factory.mktemp("ui") / "data").start()
    try:
        with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
            assert reg.register(STORY_MODEL) == "1"
            reg.stage(STORY_MODEL, "1", "Staging")
            reg.client.create_registered_model(HTML_MODEL, description=HTML_DESCRIPTION)
            assert log_broken_version(BROKEN_MODEL) == "1"
            assert [reg.register(TWO_MODEL), reg.register(TWO_MODEL, c=0.3)] == ["1", "2"]
            assert server.enable(TWO_MODEL).status_code == 200
            assert server.enable(BROKEN_MODEL).status_code == 200
            _admin(  # a tag: readers see the cluster's tags but no way to change them
                server,
                "PUT",
                "/api/2.0/preview/mlflow/endpoints/update-cluster-config",
                json={
                    "registered_model_name": BROKEN_MODEL,
                    "desired_cluster_config": {
                        "node_type_id": "local-default",
                        "tags": [{"key": "team", "value": "ml"}],
                    },
                },
            )
            _admin(server, "POST", "/api/2.0/preview/scim/v2/Users", json={"userName": "viewer"})
            for model in (STORY_MODEL, HTML_MODEL, BROKEN_MODEL):
                _admin(
                    server,
                    "PATCH",
                    f"/api/2.0/permissions/registered-models/{model}",
                    json={
                        "access_control_list": [
                            {"user_name": "viewer", "permission_level": "CAN_READ"}
                        ]
                    },
                )
            token = _admin(
                server,
                "POST",
                "/api/2.0/token-management/on-behalf-of/tokens",
                json={"application_id": "viewer", "lifetime_seconds": 3600},
            )
            yield UiWorld(server, reg, str(token["token_value"]))
    finally:
        server.close()


@pytest.fixture
def http(ui_world: UiWorld) -> Iterator[httpx.Client]:
    """A client with no credentials of its own, not following redirects."""
    with httpx.Client(base_url=ui_world.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        require_service(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def signed_in_page(browser: Any, ui_world: UiWorld, token: str, width: int = 1280) -> Any:
    """A fresh browser context, signed in with ``token`` through the sign-in form; the console's
    errors are collected in ``page.console_errors`` as ``"text [url]"``."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.console_errors = []
    page.on(
        "console",
        lambda m: (
            page.console_errors.append(f"{m.text} [{m.location.get('url', '')}]")
            if m.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.goto(f"{ui_world.url}/ui/")
    assert "/ui/signin" in page.url  # unauthenticated: redirected to sign in
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{ui_world.url}/ui/")
    return page


def screenshot(page: Any, name: str) -> None:
    """Save the page as docs/img/ui-<name>.png (the tour in docs/ui.md shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"ui-{name}.png"), full_page=True)
