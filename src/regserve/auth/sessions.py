"""UI sessions: what a signed-in browser's cookie holds instead of its token.

The cookie names the token by its hash (what the state database stores, never the token
itself), with an expiry, signed with HMAC-SHA256 under a key derived from the admin token,
which every gateway of a deployment holds and the database does not. So the cookie:

- is not an API token: the ``Authorization`` header does not take it, and it counts only on
  the paths the UI uses (:mod:`regserve.gateway.cookies`);
- ends with the session (``REGSERVE_UI_SESSION_HOURS``), or with its token (revoked, expired,
  its principal deactivated), whichever comes first;
- cannot be made from a copy of the database: the token hashes there sign nothing.

Format: ``v1.<token sha256 hex>.<expiry, unix seconds>.<hmac hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

__all__ = ["SessionSigner"]

_VERSION = "v1"
_CONTEXT = b"regserve ui session v1"


class SessionSigner:
    """Issues and checks UI session cookies."""

    def __init__(
        self, admin_token: str, lifetime: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = hmac.new(admin_token.encode("utf-8"), _CONTEXT, hashlib.sha256).digest()
        self.lifetime = lifetime
        """Seconds a session lasts (the cookie's Max-Age)."""
        self._clock = clock

    def issue(self, token_hash: str) -> str:
        """A session for the token whose hash is ``token_hash``, from now on."""
        expiry = int(self._clock() + self.lifetime)
        body = f"{_VERSION}.{token_hash}.{expiry}"
        return f"{body}.{self._mac(body)}"

    def token_hash(self, cookie: str) -> str | None:
        """The token hash a valid, unexpired session names; None otherwise."""
        body, _, mac = cookie.rpartition(".")
        version, _, rest = body.partition(".")
        token_hash, _, expiry = rest.partition(".")
        if version != _VERSION or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            if int(expiry) <= self._clock():
                return None
        except ValueError:
            return None
        return token_hash

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode("latin-1", "replace"), hashlib.sha256).hexdigest()
