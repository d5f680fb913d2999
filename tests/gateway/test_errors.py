"""The one error table and its one renderer, on every path: FastAPI's handlers, the bare ASGI
handlers and the connection protocol's raw HTTP refusals."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from regserve import errors as core
from regserve.client import errors as client
from regserve.gateway import connections
from regserve.gateway.errors import (
    STATUS_BY_CODE,
    ForeignError,
    code_for_status,
    render_error,
    send_error,
)
from tests.gateway.conftest import Sent, error_of

SRC = Path(__file__).resolve().parents[2] / "src" / "regserve"


def _error(code: str, message: str = "what happened") -> core.RegServeError:
    error = core.RegServeError(message)
    error.error_code = code
    return error


@pytest.mark.parametrize(("code", "status"), sorted(STATUS_BY_CODE.items()))
def test_every_code_renders_with_its_status(code: str, status: int) -> None:
    answer = render_error(_error(code))
    assert answer.status == status
    assert json.loads(answer.body) == {"error_code": code, "message": "what happened"}
    headers = dict(answer.headers)
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(answer.body)).encode()


@pytest.mark.parametrize("error", [ValueError("secret detail"), AssertionError(), KeyError("x")])
def test_an_unknown_exception_is_a_500_that_tells_nothing(error: Exception) -> None:
    answer = render_error(error)
    assert answer.status == 500
    body = json.loads(answer.body)
    assert body["error_code"] == "INTERNAL_ERROR"
    assert "secret" not in body["message"]


def test_a_code_missing_from_the_table_is_a_500() -> None:
    assert render_error(_error("NO_SUCH_CODE")).status == 500


def test_every_code_the_source_raises_is_in_the_table() -> None:
    """``error_code = "..."`` anywhere but in the worker (which answers with its own statuses,
    in the model's environment) and the client (which reads codes)."""
    raised = set()
    for path in SRC.rglob("*.py"):
        if path.parent.name in ("worker", "client"):
            continue
        raised |= set(re.findall(r'error_code = "([A-Z_]+)"', path.read_text()))
    assert {"ENVIRONMENT_BUILD_FAILED", "CLUSTER_UPDATE_FAILED"} <= raised
    assert raised - set(STATUS_BY_CODE) == set()


def _subclasses(cls: type[core.RegServeError]) -> list[type[core.RegServeError]]:
    return [cls, *(s for c in cls.__subclasses__() for s in _subclasses(c))]


def test_every_core_error_class_is_in_the_table() -> None:
    import regserve.backends.base
    import regserve.envs.manager
    import regserve.registry.errors  # noqa: F401 - defines errors of their own

    for cls in _subclasses(core.RegServeError):
        if cls is not ForeignError:
            assert cls.error_code in STATUS_BY_CODE, cls


@pytest.mark.parametrize(
    ("error", "header", "value"),
    [
        (core.UnavailableError("starting", retry_after=30), b"retry-after", b"30"),
        (core.RateLimitedError("slow down", retry_after=4), b"retry-after", b"4"),
        (core.MethodNotAllowedError("no", ("GET", "POST")), b"allow", b"GET, POST"),
        (core.UnauthenticatedError("who?"), b"www-authenticate", b'Bearer realm="regserve"'),
        (ForeignError("no", 405, headers={"Allow": "GET"}), b"allow", b"GET"),
    ],
)
def test_headers_an_error_calls_for(error: core.RegServeError, header: bytes, value: bytes) -> None:
    assert dict(render_error(error).headers)[header] == value


def test_no_retry_after_without_a_hint() -> None:
    headers = dict(render_error(core.RateLimitedError("too many", retry_after=None)).headers)
    assert b"retry-after" not in headers


def test_a_foreign_error_keeps_its_status_and_takes_its_code_from_the_table() -> None:
    answer = render_error(ForeignError("Unprocessable", 422, headers={"Content-Type": "x/y"}))
    assert answer.status == 422
    assert json.loads(answer.body)["error_code"] == "INVALID_PARAMETER_VALUE"
    assert dict(answer.headers)[b"content-type"] == b"application/json"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "BAD_REQUEST"),
        (404, "RESOURCE_DOES_NOT_EXIST"),
        (405, "METHOD_NOT_ALLOWED"),
        (418, "BAD_REQUEST"),
        (500, "INTERNAL_ERROR"),
        (502, "INTERNAL_ERROR"),
        (503, "TEMPORARILY_UNAVAILABLE"),
    ],
)
def test_code_for_a_status_alone(status: int, code: str) -> None:
    assert code_for_status(status) == code


async def test_bare_asgi_paths_send_the_rendered_answer(sent: Sent) -> None:
    status = await send_error(sent, core.UnauthenticatedError("No token."))
    assert status == sent.status == 401
    assert json.loads(sent.body) == {"error_code": "UNAUTHENTICATED", "message": "No token."}
    assert sent.headers[b"www-authenticate"] == b'Bearer realm="regserve"'
    assert sent.headers[b"content-length"] == str(len(sent.body)).encode()


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("error", "head"),
    [
        (core.RequestTimeoutError("slow headers"), b"HTTP/1.1 408 Request Timeout\r\n"),
        (core.RateLimitedError("many", retry_after=None), b"HTTP/1.1 429 Too Many Requests\r\n"),
    ],
)
def test_connection_refusals_are_raw_http_of_the_same_answer(
    error: core.RegServeError, head: bytes
) -> None:
    transport = _Transport()
    connections._refuse(transport, error)
    answer = render_error(error)
    assert transport.closed
    assert transport.written.startswith(head)
    headers, _, body = transport.written.partition(b"\r\n\r\n")
    assert body == answer.body
    assert b"connection: close" in headers.split(b"\r\n")
    assert f"content-length: {len(body)}".encode() in headers.split(b"\r\n")
    assert b"retry-after" not in headers


# -- FastAPI's paths: the app with no services and no registry --------------------------------


async def test_an_unknown_serving_api_is_endpoint_not_found(api: httpx.AsyncClient) -> None:
    answer = await api.get("/api/2.0/preview/mlflow/endpoints/no-such-call")
    assert answer.status_code == 404
    assert error_of(answer)["error_code"] == "ENDPOINT_NOT_FOUND"


async def test_no_route_is_endpoint_not_found(api: httpx.AsyncClient) -> None:
    answer = await api.get("/no/such/path")
    assert answer.status_code == 404
    assert error_of(answer) == {"error_code": "ENDPOINT_NOT_FOUND", "message": "Not Found"}


async def test_an_invalid_body_is_400(api: httpx.AsyncClient) -> None:
    answer = await api.post("/api/2.0/preview/mlflow/endpoints/enable", json={})
    assert answer.status_code == 400
    body = error_of(answer)
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["message"].startswith("registered_model_name: ")


async def test_malformed_json_is_400_bad_request(api: httpx.AsyncClient) -> None:
    answer = await api.post(
        "/api/2.0/preview/mlflow/endpoints/enable",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert error_of(answer) == {
        "error_code": "BAD_REQUEST",
        "message": "The request body is not valid JSON.",
    }


async def test_a_crash_in_a_route_is_500_internal_error(api: httpx.AsyncClient) -> None:
    answer = await api.get("/metrics")  # built without services: the route cannot answer
    assert answer.status_code == 500
    assert error_of(answer)["error_code"] == "INTERNAL_ERROR"


# -- the client reads the codes the way the gateway writes them -------------------------------


@pytest.mark.parametrize(("code", "status"), sorted(STATUS_BY_CODE.items()))
def test_the_client_types_a_code_as_its_status_would(code: str, status: int) -> None:
    assert type(client.error_for(status, code, "m")) is type(client.error_for(status, "", "m"))


def test_the_client_and_core_deadline_errors_share_a_code() -> None:
    error = client.error_for(504, core.DeadlineExceededError.error_code, "late")
    assert isinstance(error, client.DeadlineExceededError)
    assert render_error(core.DeadlineExceededError("late")).status == 504
