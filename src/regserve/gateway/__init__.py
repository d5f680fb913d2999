"""The gateway: one ASGI app for scoring, the control API, and the hosted MLflow registry."""

from __future__ import annotations

from regserve.gateway.app import Gateway, Services

__all__ = ["Gateway", "Services"]
