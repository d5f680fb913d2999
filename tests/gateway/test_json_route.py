"""JSON routes read a JSON body whatever generic type it came with, in process: the body
reaches the route's validation as JSON (its own message, not "a valid dictionary"), and a body
that is not JSON is told which header to send."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import error_of

ENABLE = "/api/2.0/preview/mlflow/endpoints/enable"
FORM = "application/x-www-form-urlencoded"  # what curl -d sends
EMPTY_NAME = b'{"registered_model_name": ""}'  # JSON the route refuses by its own rule


@pytest.mark.parametrize(
    "content_type",
    [None, FORM, "text/plain; charset=utf-8", "application/json"],
)
async def test_a_json_body_is_read_as_json(
    api: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = await api.post(ENABLE, content=EMPTY_NAME, headers=headers)
    assert answer.status_code == 400
    assert error_of(answer) == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "registered_model_name: String should have at least 1 character",
    }


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        (FORM, f"not JSON (it came with Content-Type: {FORM})"),
        (None, "not JSON (it came with no Content-Type)"),
        ("text/csv", "not Content-Type: text/csv"),
    ],
)
async def test_what_is_not_json_is_told_the_header(
    api: httpx.AsyncClient, content_type: str | None, said: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = await api.post(ENABLE, content=b"registered_model_name=fraud", headers=headers)
    assert answer.status_code == 400
    body = error_of(answer)
    assert body["error_code"] == "BAD_REQUEST"
    assert said in body["message"]
    assert "'Content-Type: application/json'" in body["message"]


async def test_no_body_is_told_what_to_send(api: httpx.AsyncClient) -> None:
    answer = await api.post(ENABLE)
    assert answer.status_code == 400
    assert error_of(answer)["message"].startswith("The request has no body: send a JSON object")
