"""The Serving web UI: server-rendered pages under ``/ui/`` and the static files they use."""

from __future__ import annotations

from regserve.ui.pages import build_ui_router, static_files

__all__ = ["build_ui_router", "static_files"]
