"""The UI's pages: sign-in and sign-out, the model list and a model's Serving page.

Pages are rendered on the server with Jinja2 (autoescaping everything) and filled in by the
page's JavaScript from the JSON APIs; every asset ships in this package (``static/``).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from regserve import __version__
from regserve.auth.levels import PermissionLevel
from regserve.errors import RegServeError
from regserve.gateway.context import identity_of, maybe_services, services_of, shown_of
from regserve.gateway.cookies import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    SIGNIN_PATH,
    safe_next,
)
from regserve.gateway.errors import status_for
from regserve.gateway.mlflow_ui import MLFLOW_UI_PATH, mlflow_model_url
from regserve.ui.failures import headline

__all__ = ["install_ui", "router", "static_files"]

_MAX_FORM_BYTES = 16 * 1024
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_templates = Environment(
    loader=PackageLoader("regserve.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_templates.filters["urlpart"] = lambda value: quote(str(value), safe="")


def static_files() -> StaticFiles:
    """The UI's CSS and JavaScript, served from the installed package."""
    return StaticFiles(packages=[("regserve.ui", "static")])


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(version=__version__, **context)
    return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


router = APIRouter(include_in_schema=False)


def install_ui(api: FastAPI) -> None:
    """Add the UI's pages and its static files to the gateway's app (``regserve.app`` wires
    it in: the gateway does not import the UI)."""
    api.include_router(router)
    api.mount("/ui/static", static_files(), name="ui-static")
    # After the static files: a catch-all before them would answer for them too.
    api.add_api_route("/ui/{path:path}", not_found, methods=["GET"], include_in_schema=False)


@router.get("/ui")
async def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=303)


@router.get(SIGNIN_PATH)
async def signin_page(
    request: Request, next: str | None = None, signed_out: str | None = None
) -> Response:
    notice = "You have signed out." if signed_out else ""
    return _signin_form(request, safe_next(next), notice=notice)


@router.post(SIGNIN_PATH)
async def signin(request: Request) -> Response:
    form = await _form(request)
    target = safe_next(form.get("next"))
    expected = request.cookies.get(SIGNIN_COOKIE)
    if not expected or not secrets.compare_digest(expected, form.get("csrf", "")):
        return _signin_form(request, target, "The sign-in form expired: try again.", 403)
    token = form.get("token", "").strip()
    try:
        await services_of(request).access.authenticate(f"Bearer {token}".encode("latin-1"))
    except (RegServeError, UnicodeEncodeError):
        return _signin_form(request, target, "That token is not valid.", 401)
    response = RedirectResponse(target, status_code=303)
    access = services_of(request).access
    response.set_cookie(
        SESSION_COOKIE,
        access.session_for(token),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=int(access.sessions.lifetime),
    )
    response.delete_cookie(SIGNIN_COOKIE, path=SIGNIN_PATH)
    return response


@router.post("/ui/signout")
async def signout() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/ui/")
async def model_list(request: Request) -> Response:
    try:
        rows = await _model_rows(request)
    except RegServeError as error:  # e.g. the registry is unavailable
        return _page(
            "models.html", status_for(error), models=[], error=error.message, **_chrome(request)
        )
    return _page("models.html", models=rows, **_chrome(request))


@router.get("/ui/models/{name:path}")
async def serving_page(request: Request, name: str) -> Response:
    services = services_of(request)
    try:
        await services.access.require(
            identity_of(request), name, PermissionLevel.CAN_READ, "open its Serving page"
        )
        exists = await _model_exists(request, name)
        endpoint = await asyncio.to_thread(services.store.get_endpoint, name)
    except RegServeError as error:
        return _page("error.html", status_for(error), message=error.message, **_chrome(request))
    if not exists:
        return _page(
            "error.html",
            404,
            heading="Model not found",
            message=f"Registered model '{name}' does not exist.",
            **_chrome(request),
        )
    # Never served: the event and metric routes answer 400, the page does not ask them.
    return _page(
        "serving.html",
        model=name,
        served=endpoint is not None,
        mlflow_url=mlflow_model_url(name),
        **_chrome(request),
    )


async def not_found(request: Request, path: str) -> Response:
    """Any other ``/ui/`` address: a page, not the framework's JSON 404."""
    return _page(
        "error.html",
        404,
        heading="Page not found",
        message=f"There is no page at /ui/{path}.",
        **_chrome(request),
    )


async def _model_exists(request: Request, name: str) -> bool:
    reader = services_of(request).reader
    if reader is None:  # a gateway without a registry: the page's own calls will tell
        return True
    return await asyncio.to_thread(reader.snapshot, name) is not None


def _signin_form(
    request: Request, target: str, error: str = "", status: int = 200, notice: str = ""
) -> Response:
    csrf = secrets.token_urlsafe(24)
    response = _page("signin.html", status, csrf=csrf, next=target, error=error, notice=notice)
    response.set_cookie(
        SIGNIN_COOKIE,
        csrf,
        path=SIGNIN_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (first value of each); bounded in size."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


def _chrome(request: Request) -> dict[str, Any]:
    """What every signed-in page shows around its content: who is signed in, and whether
    MLflow's own UI is here (``/mlflow/``: only when regserve hosts the registry)."""
    services = maybe_services(request)
    hosted = services is not None and not services.settings.registry_uri
    return {"user": identity_of(request).name, "mlflow_ui": MLFLOW_UI_PATH if hosted else ""}


async def _model_rows(request: Request) -> list[dict[str, str | None]]:
    """Every registered model the caller may read, with its serving state."""
    services = services_of(request)
    names: list[str] = []
    if services.reader is not None:
        names = await asyncio.to_thread(services.reader.list_models)
    endpoints = {e.model_name: e for e in await asyncio.to_thread(services.store.list_endpoints)}
    readable = await services.access.readable(identity_of(request), names)
    shown = shown_of(request)
    rows: list[dict[str, str | None]] = []
    for name in readable:
        endpoint = endpoints.get(name)
        state = endpoint.state.name if endpoint else "NOT_ENABLED"
        line = headline(shown(endpoint.state_message) if endpoint else "")
        rows.append(
            {"name": name, "state": state, "message": line.text, "log_version": line.log_version}
        )
    return rows
