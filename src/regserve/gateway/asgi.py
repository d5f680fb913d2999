"""Gateway: the one ASGI app on the one port.

A browser's page load of ``/`` (it accepts ``text/html``) is sent to the UI, ``/ui/``, which
signs it in when it must; API clients get the API's answers there. Every other request is
authenticated here (``/health``, the UI's sign-in page and static files excepted) from its
``Authorization`` header, or from the UI's session cookie (``gateway/cookies.py``), and the
caller's identity put in the scope; each route then checks the caller's permissions. Scoring
URLs go straight to the bare :class:`ScoringHandler`; everything else goes to a FastAPI app
holding the control API, ``/health``, ``/metrics`` and whatever the wiring adds (the UI,
``/ui/``, installed by ``regserve.app``: the gateway does not import the UI), with MLflow's
own tracking and registry server mounted beneath it for every path regserve does not route
itself (answering 503 until it is attached: ``registry_mount.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from regserve import __version__
from regserve.auth.service import Identity
from regserve.errors import RegServeError
from regserve.gateway import (
    control,
    health,
    inference_tables,
    models,
    permissions,
    principals,
    tokens,
    traffic,
    version_files,
    webhooks,
)
from regserve.gateway.browser_root import send_browser_root
from regserve.gateway.context import IDENTITY_KEY, Services
from regserve.gateway.cookies import (
    UI_HOME,
    check_csrf,
    is_open_path,
    session_cookie,
    signin_redirect,
    wants_signin_page,
    wants_ui_home,
)
from regserve.gateway.errors import send_error
from regserve.gateway.handlers import install_error_handlers
from regserve.gateway.methods import MethodCheck
from regserve.gateway.mlflow_ui import install_mlflow_ui
from regserve.gateway.openapi import install_openapi
from regserve.gateway.registry_guard import RegistryGuard, RegistryLookups
from regserve.gateway.registry_mount import RegistryMount
from regserve.gateway.scoring import ScoringHandler, parse_scoring_path

__all__ = ["Gateway", "Services", "build_api"]

# The webhook route authenticates each delivery by its signature instead of a token, and the
# version-files route takes a version's own credential, never a token.
_OPEN_PATHS = frozenset({"/health", webhooks.WEBHOOK_PATH, version_files.FILES_PATH})

Extension = Callable[[FastAPI], None]
"""Adds routes to the FastAPI app (the UI's pages and files), before the registry's mount."""


class Gateway:
    """The ASGI entry point: authentication, then scoring or the rest."""

    def __init__(
        self,
        services: Services,
        lookups: RegistryLookups | None = None,
        extensions: tuple[Extension, ...] = (),
    ) -> None:
        """``lookups``: regserve hosts MLflow's server, mounted once :meth:`attach_registry`
        hands it in (503 until then); None: no server is mounted."""
        self.services = services
        self._access = services.access
        self._scoring = ScoringHandler(
            services.settings,
            services.router,
            services.recorder,
            services.access,
            services.capture,
        )
        self._lookups = lookups
        self.registry = RegistryMount() if lookups is not None else None
        self.api = build_api(services, self.registry, extensions)
        self._methods = MethodCheck(self.api.router.routes)

    def attach_registry(self, app: ASGIApp) -> None:
        """MLflow's server is ready: mount it, behind regserve's permissions."""
        assert self.registry is not None
        assert self._lookups is not None
        self.registry.attach(RegistryGuard(app, self.services, self._lookups))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        path: str = scope["path"]
        if wants_ui_home(scope):  # a browser's front page: the UI, or MLflow's printed link
            if scope["method"] == "GET":
                await send_browser_root(send)  # browser_root.py: reads the URL's fragment
            else:
                await _send_redirect(send, UI_HOME)
            return
        if path not in _OPEN_PATHS and not is_open_path(path):
            try:
                scope[IDENTITY_KEY] = await self._authenticate(scope)
            except RegServeError as error:
                if error.error_code == "UNAUTHENTICATED" and wants_signin_page(scope):
                    await _send_redirect(send, signin_redirect(scope))
                else:
                    await send_error(send, error)
                return
        target = parse_scoring_path(path)
        if target is not None:
            await self._scoring(scope, receive, send, *target)
            return
        try:
            self._methods.check(scope)
        except RegServeError as error:
            await send_error(send, error)
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


def build_api(
    services: Services | None, registry_app: ASGIApp | None, extensions: tuple[Extension, ...] = ()
) -> FastAPI:
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
    routes = (control, tokens, principals, permissions, webhooks, models, traffic, version_files)
    for module in (*routes, inference_tables):
        api.include_router(module.router)
    for extend in extensions:
        extend(api)
    api.include_router(health.router)
    health.install_worker_stats(api, services)
    install_error_handlers(api)
    if registry_app is not None:
        install_mlflow_ui(api, registry_app)
        api.mount("/", registry_app)
    return api


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _send_redirect(send: Send, location: str) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
