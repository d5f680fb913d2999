"""Who is calling: Bearer tokens and basic auth ``token:<tok>``, checked in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from regserve.errors import UnauthenticatedError

__all__ = ["Authenticator", "token_from_header"]


def token_from_header(value: bytes | None) -> str:
    """The token an Authorization header carries; raises UnauthenticatedError otherwise."""
    if not value:
        raise UnauthenticatedError(
            "Missing credentials: send 'Authorization: Bearer <token>' "
            "(or basic auth with user 'token' and the token as password)."
        )
    scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise UnauthenticatedError("Malformed basic auth credentials.") from None
        if user == "token" and password:
            return password
        raise UnauthenticatedError("Basic auth must use the user name 'token' and a token.")
    raise UnauthenticatedError("Unsupported Authorization header: use Bearer or basic auth.")


class Authenticator:
    """Checks a caller's token. Today: the admin token; principals come with permissions."""

    def __init__(self, admin_token: str) -> None:
        self._admin = admin_token.encode()

    def authenticate(self, header: bytes | None) -> str:
        """The principal's name, or UnauthenticatedError."""
        token = token_from_header(header)
        if hmac.compare_digest(token.encode(), self._admin):
            return "admin"
        raise UnauthenticatedError("Invalid or expired token.")
