"""What a route reads from the request: the services and the authenticated caller."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import Scope

from regserve.auth.service import Identity

__all__ = ["IDENTITY_KEY", "identity_of", "scope_identity", "services_of"]

IDENTITY_KEY = "regserve.identity"
"""Where the gateway puts the caller's :class:`Identity` in the ASGI scope."""


def scope_identity(scope: Scope) -> Identity:
    identity = scope.get(IDENTITY_KEY)
    # The gateway authenticates every path but /health before anything else runs.
    assert isinstance(identity, Identity), "request reached a route unauthenticated"
    return identity


def identity_of(request: Request) -> Identity:
    return scope_identity(request.scope)


def services_of(request: Request) -> Any:
    return request.app.state.services
