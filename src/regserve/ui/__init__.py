"""The Serving web UI: server-rendered pages under ``/ui/`` and the static files they use.

It depends on the gateway (its services, the session cookie's rules, the error table); the
gateway does not import it: ``regserve.app`` installs it with :func:`install_ui`.
"""

from __future__ import annotations

from regserve.ui.pages import install_ui, static_files

__all__ = ["install_ui", "static_files"]
