"""The gateway: one ASGI app for scoring, the control API, and the hosted MLflow registry."""

from __future__ import annotations

from regserve.gateway.asgi import Gateway
from regserve.gateway.context import Services

__all__ = ["Gateway", "Services"]
