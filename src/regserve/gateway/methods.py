"""A path regserve routes, asked with a method it does not take: 405 with ``Allow``.

MLflow's server is mounted beneath regserve's routes at ``/`` and the serving API ends in a
catch-all (``/api/2.0/preview/mlflow/endpoints/{rest:path}``, 404 ``ENDPOINT_NOT_FOUND``); both
match every method, so without this check ``POST /health`` went to MLflow's app
(unauthenticated, since ``/health`` is open) and ``GET .../endpoints/enable`` was a 404.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from regserve.errors import MethodNotAllowedError
from regserve.worker.text import excerpt

__all__ = ["MethodCheck"]

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_FALLBACK = {"GET", "POST", "PUT", "PATCH", "DELETE"}


class MethodCheck:
    """Knows regserve's own routes. Mounts answer every method themselves, and a route that
    takes every method is a fallback (the serving API's catch-all): neither is a 405."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = [
            r
            for r in _walk(routes)
            if isinstance(r, Route) and not (r.methods or set()) >= _FALLBACK
        ]

    def check(self, scope: Scope) -> None:
        """Raise :class:`MethodNotAllowedError` when a route has this path but none takes this
        method."""
        if self._match(scope) is not Match.PARTIAL:
            return
        allowed = tuple(m for m in _METHODS if self._match({**scope, "method": m}) is Match.FULL)
        raise MethodNotAllowedError(
            f"{excerpt(scope['method'])} is not allowed on {excerpt(scope['path'])}; "
            f"use {' or '.join(allowed)}.",
            allowed,
        )

    def _match(self, scope: Scope) -> Match:
        best = Match.NONE
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return match
            if match is Match.PARTIAL:
                best = match
        return best


def _walk(routes: Sequence[Any]) -> Iterator[Any]:
    """Every route, those of included routers too (FastAPI keeps them in ``original_router``)."""
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from _walk(inner)
        else:
            yield route
