"""What a route reads from the request: the gateway's services and the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import Scope

from regserve.auth.management import AccessManager
from regserve.auth.service import AccessService, Identity
from regserve.backends.base import Backend
from regserve.controller import Controller
from regserve.errors import UnauthenticatedError
from regserve.gateway.worker_stats import BatchTally
from regserve.gateways.node import GatewayNode
from regserve.inference.capture import InferenceCapture
from regserve.inference.storage import TableStorage
from regserve.metrics import ControlMetrics, TrafficRecorder
from regserve.redaction import PathRedactor
from regserve.registry.deferred import DeferredReader
from regserve.registry.webhooks import WebhookVerifier
from regserve.router import Router
from regserve.settings import Settings
from regserve.store import StateStore

__all__ = [
    "IDENTITY_KEY",
    "Services",
    "identity_of",
    "maybe_services",
    "scope_identity",
    "services_of",
    "shown_of",
]

IDENTITY_KEY = "regserve.identity"
"""Where the gateway puts the caller's :class:`Identity` in the ASGI scope."""


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
    reader: DeferredReader | None = None
    """The registry, for the UI's views of models and input examples."""
    node: GatewayNode | None = None
    """This gateway among the others on its database (leader or follower), for /health."""
    boot_id: str = ""
    """Names this start of the process (a restart in place keeps the pid, not this)."""
    started_at: int = 0
    """When this process (image) started, in epoch milliseconds."""
    starting: Callable[[], list[str]] = list
    """What is still starting (``["registry"]`` in ``regserve up``'s first seconds), for
    /health."""
    batches: BatchTally | None = None
    """Counts the workers' batches into the per-minute metrics (before each flush)."""
    capture: InferenceCapture | None = None
    """The inference tables' capture (None: nothing is captured)."""
    tables: TableStorage | None = None
    """Where the inference tables lie, for the read route (None: no tables, nothing to read)."""


def scope_identity(scope: Scope) -> Identity:
    identity = scope.get(IDENTITY_KEY)
    # The gateway authenticates every path but the open ones before anything else runs; an
    # open path reaching a route that needs a caller is refused, not a crash.
    if not isinstance(identity, Identity):
        raise UnauthenticatedError("This path needs a token (Authorization: Bearer <token>).")
    return identity


def identity_of(request: Request) -> Identity:
    return scope_identity(request.scope)


def maybe_services(request: Request) -> Services | None:
    """The app's services; None when it was built without them (to list its routes)."""
    services = request.app.state.services
    return services if isinstance(services, Services) else None


def services_of(request: Request) -> Services:
    services = maybe_services(request)
    if services is None:
        raise RuntimeError("This app was built without services: it lists routes only.")
    return services


def shown_of(request: Request) -> PathRedactor:
    """Texts shown to callers name the server's files relative to the data dir."""
    return PathRedactor.for_settings(services_of(request).settings)
