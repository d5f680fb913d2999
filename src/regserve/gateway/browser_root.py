"""``GET /`` from a browser: a tiny page that follows the links MLflow prints.

MLflow prints ``<tracking URI>/#/experiments/<id>/runs/<id>`` when a run is logged. The
fragment never reaches the server, so this page reads it: with a fragment the browser goes
to MLflow's UI (``/mlflow/`` + the fragment, which signs in first when needed), without one to
regserve's UI. It holds no data, so it is answered before authentication. Only a ``GET`` that
accepts an HTML page gets it (``cookies.wants_ui_home``; a ``HEAD`` is sent to the UI): API
clients still reach MLflow's server at ``/`` as before.
"""

from __future__ import annotations

import base64
import hashlib

from starlette.types import Send

__all__ = ["send_browser_root"]

_SCRIPT = 'location.replace(location.hash.length > 1 ? "/mlflow/" + location.hash : "/ui/");'
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>regserve</title>'
    f"<script>{_SCRIPT}</script>"
    '<noscript><meta http-equiv="refresh" content="0; url=/ui/"></noscript></head>'
    '<body><a href="/ui/">regserve</a></body></html>'
).encode()
_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-length", str(len(_PAGE)).encode()),
    # Only this page's own script runs (allowed by its hash, so no inline script else).
    (
        b"content-security-policy",
        f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; "
        "frame-ancestors 'none'".encode(),
    ),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


async def send_browser_root(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _PAGE})
