"""Reading a token from an Authorization header: ``Bearer <tok>`` or basic auth ``token:<tok>``."""

from __future__ import annotations

import base64
import binascii

from regserve.errors import UnauthenticatedError

__all__ = ["token_from_header"]


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
