"""Gateway: the one ASGI app on the one port.

Every request is authenticated here (``/health``, the UI's sign-in page and static files
excepted) from its ``Authorization`` header, or from the UI's session cookie
(``ui/session.py``), and the caller's identity put in the scope; each route then checks the
caller's permissions. Scoring URLs go straight to the bare :class:`ScoringHandler`;
everything else goes to a FastAPI app holding the control API, ``/health``, ``/metrics`` and
the UI (``/ui/``), with MLflow's own tracking and registry server mounted beneath it for every
path regserve does not route itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from regserve import __version__
from regserve.auth.management import AccessManager
from regserve.auth.service import AccessService, Identity
from regserve.backends.base import Backend
from regserve.controller import Controller
from regserve.errors import RegServeError
from regserve.gateway.context import IDENTITY_KEY
from regserve.gateway.control import build_control_router
from regserve.gateway.errors import error_body, error_headers, status_for
from regserve.gateway.models import build_models_router
from regserve.gateway.openapi import install_openapi
from regserve.gateway.permissions import build_permissions_router
from regserve.gateway.principals import build_principals_router
from regserve.gateway.registry_guard import RegistryGuard, RegistryLookups
from regserve.gateway.scoring import ScoringHandler, parse_scoring_path
from regserve.gateway.tokens import build_tokens_router
from regserve.gateway.webhooks import WEBHOOK_PATH, build_webhook_router
from regserve.gateway.worker_stats import WorkerStats
from regserve.gateways import GatewayNode
from regserve.metrics import ControlMetrics, TrafficRecorder
from regserve.registry import RegistryReader
from regserve.registry.webhooks import WebhookVerifier
from regserve.router import Router
from regserve.settings import Settings
from regserve.store import StateStore
from regserve.ui import build_ui_router, static_files
from regserve.ui.session import (
    check_csrf,
    is_open_path,
    session_cookie,
    signin_redirect,
    wants_signin_page,
)

__all__ = ["Gateway", "Services", "build_api"]

# The webhook route authenticates each delivery by its signature instead of a token.
_OPEN_PATHS = frozenset({"/health", WEBHOOK_PATH})
_CODE_BY_STATUS = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
                   413: "REQUEST_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}  # fmt: skip


@dataclass
class Services:
    """What the gateway's routes reach: handed in by ``regserve.app``."""

    settings: Settings
    store: StateStore
    controller: Controller
    router: Router
    backend: Backend
    recorder: TrafficRecorder
    access: AccessService
    manager: AccessManager
    control_metrics: ControlMetrics | None = None
    webhooks: WebhookVerifier | None = None
    reader: RegistryReader | None = None
    """The registry, for the UI's views of models and input examples."""
    node: GatewayNode | None = None
    """This gateway among the others on its database (leader or follower), for /health."""
    boot_id: str = ""
    """Names this start of the process (a restart in place keeps the pid, not this)."""
    started_at: int = 0
    """When this process (image) started, in epoch milliseconds."""


class Gateway:
    """The ASGI entry point: authentication, then scoring or the rest."""

    def __init__(
        self,
        services: Services,
        registry_app: ASGIApp | None,
        lookups: RegistryLookups | None = None,
    ) -> None:
        self.services = services
        self._access = services.access
        self._scoring = ScoringHandler(
            services.settings, services.router, services.recorder, services.access
        )
        if registry_app is not None:
            assert lookups is not None
            registry_app = RegistryGuard(registry_app, services, lookups)
        self.api = build_api(services, registry_app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        path: str = scope["path"]
        if path not in _OPEN_PATHS and not is_open_path(path):
            try:
                scope[IDENTITY_KEY] = await self._authenticate(scope)
            except RegServeError as error:
                if error.error_code == "UNAUTHENTICATED" and wants_signin_page(scope):
                    await _send_redirect(send, signin_redirect(scope))
                else:
                    await _send_error(send, error)
                return
        target = parse_scoring_path(path)
        if target is not None:
            await self._scoring(scope, receive, send, *target)
            return
        await self.api(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> Identity:
        """The caller, from the Authorization header or else the UI's session cookie."""
        header = _header(scope, b"authorization")
        token = session_cookie(scope) if header is None else None
        if token is None:
            return await self._access.authenticate(header)
        identity = await self._access.authenticate_session(token)
        check_csrf(scope)
        return identity


def build_api(services: Services | None, registry_app: ASGIApp | None) -> FastAPI:
    """The FastAPI app behind the gateway (``services`` may be None to list its routes)."""
    api = FastAPI(
        title="regserve",
        version=__version__,
        description="Serving API of regserve (Databricks classic serving shapes).",
        docs_url=None,
        redoc_url=None,
    )
    api.state.services = services
    install_openapi(api)
    api.include_router(build_control_router())
    api.include_router(build_tokens_router())
    api.include_router(build_principals_router())
    api.include_router(build_permissions_router())
    api.include_router(build_webhook_router())
    api.include_router(build_models_router())
    api.include_router(build_ui_router())
    api.mount("/ui/static", static_files(), name="ui-static")

    @api.get("/health", summary="Liveness (no authentication)")
    async def health() -> dict[str, str | int | None]:
        if services is None:
            return {"status": "ok"}
        answer: dict[str, str | int | None] = {
            "status": "ok", "boot_id": services.boot_id, "started_at": services.started_at,
        }  # fmt: skip
        node = services.node
        if node is not None:
            answer.update(role=node.role, gateway=node.gateway_id, leader=node.leader)
        return answer

    worker_stats = WorkerStats(services.router, services.recorder.registry) if services else None

    @api.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        assert services is not None
        assert worker_stats is not None
        await worker_stats.refresh()
        return Response(generate_latest(services.recorder.registry), media_type=CONTENT_TYPE_LATEST)

    @api.exception_handler(RegServeError)
    async def on_error(_: Request, error: RegServeError) -> Response:
        headers = {k.decode(): v.decode() for k, v in error_headers(error)}
        return Response(
            error_body(error.error_code, error.message), status_for(error), headers=headers
        )

    @api.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, error: StarletteHTTPException) -> Response:
        # FastAPI's own refusals (a body it cannot decode, a wrong method) in our error shape.
        code = _CODE_BY_STATUS.get(error.status_code, "BAD_REQUEST")
        return Response(
            error_body(code, str(error.detail)), error.status_code,
            headers={**(error.headers or {}), "content-type": "application/json"},
        )  # fmt: skip

    @api.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_error(error), status_code=400)

    if registry_app is not None:
        api.mount("/", registry_app)
    return api


def _validation_error(error: RequestValidationError) -> dict[str, str]:
    problems = list(error.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        return {"error_code": "BAD_REQUEST", "message": "The request body is not valid JSON."}
    parts = []
    for problem in problems:
        where = ".".join(str(x) for x in problem.get("loc", ()) if x not in ("body", "query"))
        parts.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return {"error_code": "INVALID_PARAMETER_VALUE", "message": "; ".join(parts)}


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _send_error(send: Send, error: RegServeError) -> None:
    body = error_body(error.error_code, error.message)
    headers: list[Any] = [*error_headers(error), (b"content-length", str(len(body)).encode())]
    if error.error_code == "UNAUTHENTICATED":
        headers.append((b"www-authenticate", b'Bearer realm="regserve"'))
    await send({"type": "http.response.start", "status": status_for(error), "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_redirect(send: Send, location: str) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
