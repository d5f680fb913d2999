"""The hosted registry's answers as the guard passes them on: error shapes, logged model tags,
the ids of what was just created."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message

from regserve.auth.artifact_rules import LOGGED_MODEL, RUN
from regserve.gateway.registry_answers import created_id, error_shaped, without_server_tags

WERKZEUG_404 = (
    b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    b"<p>The requested URL was not found on the server.</p>\n"
)


def _answer(status: int, content_type: bytes, body: bytes, chunks: int = 1) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        shaped = error_shaped(send)
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        await shaped({"type": "http.response.start", "status": status, "headers": headers})
        size = max(1, len(body) // chunks)
        parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        for i, part in enumerate(parts):
            more = i < len(parts) - 1
            await shaped({"type": "http.response.body", "body": part, "more_body": more})

    asyncio.run(run())
    return sent


def _body(sent: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize(
    ("status", "content_type", "body", "code", "message"),
    [
        (
            400,
            b"application/json",
            b'{"detail": "Artifact path refers to a directory"}',
            "BAD_REQUEST",
            "Artifact path refers to a directory",
        ),
        (
            422,
            b"application/json",
            b'{"detail": [{"loc": ["x"]}]}',
            "INVALID_PARAMETER_VALUE",
            '[{"loc": ["x"]}]',
        ),
        (
            404,
            b"text/html; charset=utf-8",
            WERKZEUG_404,
            "RESOURCE_DOES_NOT_EXIST",
            "The requested URL was not found on the server.",
        ),
        (405, b"text/plain", b"Method Not Allowed", "METHOD_NOT_ALLOWED", "Method Not Allowed"),
        (500, b"text/plain", b"boom", "INTERNAL_ERROR", "boom"),
    ],
)
def test_mlflow_errors_get_regserve_s_shape(
    status: int, content_type: bytes, body: bytes, code: str, message: str
) -> None:
    sent = _answer(status, content_type, body, chunks=2)
    start = sent[0]
    assert start["status"] == status
    headers = dict(start["headers"])
    answer = json.loads(_body(sent))
    assert answer == {"error_code": code, "message": message}
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(_body(sent))).encode()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b'{"detail": "not an error"}'),
        (403, b'{"error_code": "PERMISSION_DENIED", "message": "no"}'),
        (404, b""),
    ],
)
def test_other_answers_pass_as_they_are(status: int, body: bytes) -> None:
    sent = _answer(status, b"application/json", body)
    assert _body(sent) == body
    assert sent[0]["status"] == status


def test_the_registry_s_own_tag_is_dropped_from_a_caller_s_tags() -> None:
    mine = {"key": "mlflow.modelVersions", "value": "[]"}
    other = {"key": "team", "value": "fraud"}
    body, changes = without_server_tags(json.dumps({"tags": [mine, other]}).encode())
    assert (json.loads(body), changes) == ({"tags": [other]}, True)
    body, changes = without_server_tags(json.dumps({"model_id": "m-1", "tags": [mine]}).encode())
    assert (json.loads(body), changes) == ({"model_id": "m-1", "tags": []}, False)
    untouched = json.dumps({"tags": [other]}).encode()
    assert without_server_tags(untouched) == (untouched, True)
    assert without_server_tags(b"not json") == (b"not json", True)


def test_created_ids() -> None:
    run = json.dumps({"run": {"info": {"run_id": "abc", "run_uuid": "abc"}}}).encode()
    model = json.dumps({"model": {"info": {"model_id": "m-1"}}}).encode()
    assert created_id(run, RUN) == "abc"
    assert created_id(model, LOGGED_MODEL) == "m-1"
    assert created_id(model, RUN) is None
    assert created_id(b'{"run": []}', RUN) is None
    assert created_id(b"<html>", LOGGED_MODEL) is None
