"""MLflow's own web UI at ``/mlflow/``, behind regserve's sign-in and permissions.

MLflow's UI is static files in the mlflow package: its server answers ``index.html`` at ``/``
and the assets under ``/static-files/``, and the page's JavaScript calls
``ajax-api/2.0/mlflow/...`` relative to the page. Mounted at ``/mlflow`` with the prefix taken
off, each of those requests reaches the hosted server through the same :class:`RegistryGuard`
as the REST API (the same rules, the same searches cut to readable models): there is no second
permission system. The UI's session cookie counts under ``/mlflow/`` (``cookies.py``), and an
unauthenticated page load of ``/mlflow/`` goes to the sign-in page and back.

MLflow's index page gets one line: ``<script src="/ui/static/mlflow.js">`` (shipped with the
UI), a link back to regserve's Serving page of the model shown. MLflow's built JavaScript is
not changed.

Two adjustments let MLflow's unmodified JavaScript pass the checks regserve and MLflow make:

- CSRF: a cookie-authenticated call that changes state must carry ``X-Requested-By``. MLflow's
  JavaScript sends every cookie named ``mlflow-request-header-<Name>`` as the header ``<Name>``,
  so the index page sets ``mlflow-request-header-X-Requested-By`` (not a secret: a cross-site
  page can neither read it nor send a custom header without a CORS preflight).
- MLflow refuses state-changing requests whose ``Origin`` is not a localhost one, which would
  refuse its own page served under a public host name. An ``Origin`` that is this request's own
  origin (same scheme and Host) is dropped before MLflow sees it; any other is left for MLflow
  to refuse.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regserve.gateway.cookies import STATIC_PREFIX
from regserve.gateway.registry_answers import rewritten

__all__ = ["MLFLOW_UI_PATH", "MlflowUi", "install_mlflow_ui", "mlflow_model_url"]

MLFLOW_UI_PATH = "/mlflow/"
_PREFIX = MLFLOW_UI_PATH.rstrip("/")
_HEADER_COOKIE = (
    b"mlflow-request-header-X-Requested-By=mlflow-ui; Path=" + MLFLOW_UI_PATH.encode() + b"; "
    b"SameSite=Strict"
)
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since", b"if-range", b"range"})
_VALIDATORS = frozenset({b"etag", b"last-modified", b"accept-ranges"})
_BACK_SCRIPT = f'<script src="{STATIC_PREFIX}mlflow.js" defer></script>'.encode()


def mlflow_model_url(name: str) -> str:
    """The registered model's page in MLflow's UI (MLflow's route ``#/models/<name>``)."""
    return f"{MLFLOW_UI_PATH}#/models/{quote(name, safe='')}"


def install_mlflow_ui(api: FastAPI, registry_app: ASGIApp) -> None:
    """Serve the hosted server's web UI at ``/mlflow/`` (before the server's ``/`` mount)."""
    api.add_api_route("/mlflow", _to_slash, methods=["GET"], include_in_schema=False)
    api.mount(_PREFIX, MlflowUi(registry_app), name="mlflow-ui")


async def _to_slash() -> RedirectResponse:
    # The page's calls are relative to it: it must be loaded as /mlflow/, not /mlflow.
    return RedirectResponse(MLFLOW_UI_PATH, status_code=303)


class MlflowUi:
    """The guarded MLflow server, seen from under ``/mlflow``."""

    def __init__(self, registry_app: ASGIApp) -> None:
        self._app = registry_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        # Starlette's Mount leaves the path whole and puts what it matched in root_path.
        path = scope["path"][len(scope.get("root_path", _PREFIX)) :] or "/"
        inner = {
            **scope,
            "path": path,
            "raw_path": _unprefixed_raw(scope, path),
            "root_path": scope.get("app_root_path", ""),
            "headers": _without_own_origin(scope),
        }
        if path == "/" and scope["method"] == "GET":
            inner["headers"] = _unconditional(inner["headers"])
            send = rewritten(_with_header_cookie(send), _with_back_link)
        await self._app(inner, receive, send)


def _unprefixed_raw(scope: Scope, path: str) -> bytes:
    """The request's raw path (as it was sent, percent-escapes kept) without the prefix."""
    raw = scope.get("raw_path")
    prefix = _PREFIX.encode() + b"/"
    if isinstance(raw, bytes) and raw.startswith(prefix):
        return raw[len(_PREFIX) :]
    return path.encode()


def _without_own_origin(scope: Scope) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = list(scope["headers"])
    host = next((v for k, v in headers if k == b"host"), None)
    own = f"{scope.get('scheme', 'http')}://".encode() + (host or b"")
    return [(k, v) for k, v in headers if not (k == b"origin" and host and v == own)]


async def _with_back_link(status: int, body: bytes) -> bytes:
    """MLflow's index page with the script of the link back to regserve."""
    if status != 200 or b"</head>" not in body:
        return body
    return body.replace(b"</head>", _BACK_SCRIPT + b"</head>", 1)


def _unconditional(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The index page's request without its validators: the page is always a 200 that sets
    the header cookie (a 304 would not, and the browser may have lost it since)."""
    return [(k, v) for k, v in headers if k not in _CONDITIONAL]


def _with_header_cookie(send: Send) -> Send:
    """The index page's answer with the header cookie and without validators: the file's own
    ETag and Last-Modified do not describe the page with the script tag added."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 200:
            headers = [(k, v) for k, v in message.get("headers", []) if k not in _VALIDATORS]
            headers.append((b"set-cookie", _HEADER_COOKIE))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
