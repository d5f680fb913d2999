"""Where the hosted MLflow server is mounted beneath the gateway, from the start.

``regserve up`` listens before MLflow's server exists (``app.py`` makes it ready in the
background): until it is attached, every path it would answer gets 503
``TEMPORARILY_UNAVAILABLE`` with ``Retry-After``, saying the registry is starting.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from regserve.gateway.errors import send_error
from regserve.registry.errors import RegistryStartingError

__all__ = ["RegistryMount"]


class RegistryMount:
    """An ASGI app that is MLflow's (guarded) server once :meth:`attach` was called."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None

    @property
    def ready(self) -> bool:
        return self._app is not None

    def attach(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is not None:
            await self._app(scope, receive, send)
        elif scope["type"] == "http":
            await send_error(send, RegistryStartingError())
