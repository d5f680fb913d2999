"""Which requests are a browser's page load of the front page (sent to the UI), in-process."""

from __future__ import annotations

import pytest

from regserve.gateway.cookies import wants_ui_home

CHROMIUM = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)


def _scope(accept: str | None, path: str = "/", method: str = "GET") -> dict[str, object]:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    return {"type": "http", "method": method, "path": path, "headers": headers}


@pytest.mark.parametrize("accept", [CHROMIUM, "text/html", "TEXT/HTML; q=0.5", "*/*, text/html"])
def test_a_browser_page_load_of_the_front_page_goes_to_the_ui(accept: str) -> None:
    assert wants_ui_home(_scope(accept))
    assert wants_ui_home(_scope(accept, method="HEAD"))


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "text/*", "text/html;q=0", "text/htmlx"]
)
def test_api_clients_get_the_api_answer(accept: str | None) -> None:
    assert not wants_ui_home(_scope(accept))


@pytest.mark.parametrize(
    ("path", "method"),
    [("/", "POST"), ("/api/2.0/preview/mlflow/endpoints/list", "GET"), ("/metrics", "GET")],
)
def test_only_page_loads_of_the_front_page(path: str, method: str) -> None:
    assert not wants_ui_home(_scope(CHROMIUM, path, method))
