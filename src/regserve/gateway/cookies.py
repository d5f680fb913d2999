"""Browser sessions: the sign-in cookie, where it counts, and its CSRF rule.

A signed-in browser holds a session (:mod:`regserve.auth.sessions`: its token's hash and an
expiry, signed; never the token) in an HttpOnly, SameSite=Strict cookie. The gateway takes
that cookie as credentials only when a request has no ``Authorization`` header, and only on
the paths the UI uses. A cookie-authenticated request with an unsafe method must also carry
the header ``X-Requested-By`` (the UI's JavaScript sends it): a cross-site form cannot set a
custom header, and a cross-site script cannot send one without a CORS preflight, which
regserve never grants.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import cookie_parser
from starlette.types import Scope

from regserve.errors import PermissionDeniedError

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SIGNIN_COOKIE",
    "SIGNIN_PATH",
    "UI_HOME",
    "check_csrf",
    "is_open_path",
    "safe_next",
    "session_cookie",
    "signin_redirect",
    "wants_signin_page",
    "wants_ui_home",
]

SESSION_COOKIE = "regserve_session"
SIGNIN_COOKIE = "regserve_signin"
"""Double-submit token of the sign-in form (against signing a victim into another account)."""
CSRF_HEADER = b"x-requested-by"
SIGNIN_PATH = "/ui/signin"
UI_PREFIX = "/ui/"
UI_HOME = UI_PREFIX
"""Where a browser that opens the server's front page goes."""
STATIC_PREFIX = "/ui/static/"
MLFLOW_UI = "/mlflow"
"""MLflow's own web UI (``mlflow_ui.py``): its page at ``/mlflow/``, its calls beneath it."""

_COOKIE_PATHS = (
    UI_PREFIX,
    "/model/",
    "/api/2.0/preview/mlflow/endpoints/",
    "/api/2.0/clusters/",
    "/api/2.0/regserve/models/",
    "/api/2.0/regserve/endpoints/",
    "/api/2.0/regserve/inference-tables/",
    MLFLOW_UI + "/",
)
"""Where the session cookie is credentials: the UI's pages and the calls its JS makes, and
MLflow's UI and its calls (which reach the hosted server only through ``/mlflow/``)."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HOME_PATHS = frozenset({"/"})
"""The server's front page: a browser that opens ``http://host:port/`` means the UI."""
_PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def is_open_path(path: str) -> bool:
    """Paths answered without credentials: liveness, the sign-in page and the UI's assets."""
    return path in ("/health", SIGNIN_PATH) or path.startswith(STATIC_PREFIX)


def session_cookie(scope: Scope) -> str | None:
    """The session cookie when the path accepts it, else None."""
    path: str = scope["path"]
    if not path.startswith(_COOKIE_PATHS) and path != MLFLOW_UI:
        return None
    for key, value in scope["headers"]:
        if key == b"cookie":
            token = cookie_parser(value.decode("latin-1")).get(SESSION_COOKIE)
            if token:
                return token
    return None


def check_csrf(scope: Scope) -> None:
    """PermissionDeniedError for a cookie-authenticated unsafe request without the header."""
    if scope["method"] in _SAFE_METHODS:
        return
    if any(key == CSRF_HEADER and value for key, value in scope["headers"]):
        return
    raise PermissionDeniedError(
        "A request authenticated by the session cookie that changes state must carry the "
        "header 'X-Requested-By' (regserve's UI sends it); scripts should send "
        "'Authorization: Bearer <token>' instead."
    )


def wants_signin_page(scope: Scope) -> bool:
    """An unauthenticated page load of the UI or of MLflow's UI page: answered by a redirect,
    not a 401 (MLflow's calls beneath ``/mlflow/`` still get the 401)."""
    path: str = scope["path"]
    if scope["method"] not in ("GET", "HEAD"):
        return False
    return path in ("/ui", MLFLOW_UI, MLFLOW_UI + "/") or path.startswith(UI_PREFIX)


def wants_ui_home(scope: Scope) -> bool:
    """A browser's page load of the server's front page: it goes to the UI (which signs it
    in when it must). Only a request that accepts an HTML page is one: an API client (curl's
    ``*/*``, ``application/json``, no Accept at all) gets the API's own answer there."""
    path: str = scope["path"]
    return scope["method"] in ("GET", "HEAD") and path in _HOME_PATHS and _accepts_html(scope)


def _accepts_html(scope: Scope) -> bool:
    """Whether the Accept header names an HTML page type explicitly, with a quality above 0
    (a wildcard does not count: every client sends one)."""
    for key, value in scope["headers"]:
        if key != b"accept":
            continue
        for item in value.decode("latin-1").split(","):
            media, _, params = item.partition(";")
            if media.strip().lower() in _PAGE_TYPES and _quality(params) > 0:
                return True
    return False


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def signin_redirect(scope: Scope) -> str:
    """The sign-in URL that comes back to the page asked for."""
    target = scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    if query:
        target = f"{target}?{query}"
    return f"{SIGNIN_PATH}?next={quote(target, safe='')}"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a UI page of this server or MLflow's UI (with the
    fragment the sign-in page kept, e.g. ``/mlflow/#/experiments/1/runs/<id>``), never another
    site."""
    if target and (target == MLFLOW_UI or target.startswith((UI_PREFIX, MLFLOW_UI + "/"))):
        return target
    return UI_PREFIX
