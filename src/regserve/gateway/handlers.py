"""FastAPI's exception handlers: whatever a route raises is answered by
:func:`regserve.gateway.errors.render_error`, like every other error of the gateway."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from regserve.errors import BadRequestError, InvalidParameterError, RegServeError
from regserve.gateway.context import maybe_services
from regserve.gateway.errors import ForeignError, error_response
from regserve.gateway.json_route import SEND_JSON
from regserve.redaction import PathRedactor

__all__ = ["install_error_handlers"]


def install_error_handlers(api: FastAPI) -> None:
    api.exception_handler(RegServeError)(_on_error)
    api.exception_handler(HTTPException)(_on_http_error)
    api.exception_handler(RequestValidationError)(_on_invalid)
    api.exception_handler(Exception)(_on_crash)


async def _on_error(request: Request, error: RegServeError) -> Response:
    services = maybe_services(request)
    if services is None:
        return error_response(error)
    return error_response(error, PathRedactor.for_settings(services.settings))  # no server paths


async def _on_http_error(_: Request, error: HTTPException) -> Response:
    # FastAPI's own refusals (a body it cannot decode, no route) in regserve's shape.
    code = "ENDPOINT_NOT_FOUND" if error.status_code == 404 else None
    return error_response(ForeignError(str(error.detail), error.status_code, code, error.headers))


async def _on_invalid(_: Request, error: RequestValidationError) -> Response:
    return error_response(_validation_error(error))


async def _on_crash(_: Request, error: Exception) -> Response:
    return error_response(error)  # 500 INTERNAL_ERROR; Starlette re-raises it to be logged


def _validation_error(error: RequestValidationError) -> RegServeError:
    problems = list(error.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        return BadRequestError("The request body is not valid JSON.")
    if any(p.get("type") == "missing" and tuple(p.get("loc", ())) == ("body",) for p in problems):
        return InvalidParameterError(f"The request has no body: {SEND_JSON}")
    parts = []
    for problem in problems:
        where = ".".join(str(x) for x in problem.get("loc", ()) if x not in ("body", "query"))
        parts.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return InvalidParameterError("; ".join(parts))
