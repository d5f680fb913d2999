"""The controller: keeps what runs in step with the registry and the enabled endpoints."""

from __future__ import annotations

from regserve.controller.reconciler import Controller

__all__ = ["Controller"]
