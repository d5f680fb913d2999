"""The controller: keeps what runs in step with the registry and the enabled endpoints."""

from __future__ import annotations

from regserve.controller.reconciler import Controller
from regserve.controller.states import endpoint_state

__all__ = ["Controller", "endpoint_state"]
