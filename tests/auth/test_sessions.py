"""UI session cookies: signed, expiring, never the token, bound to the deployment's key."""

from __future__ import annotations

from regserve.auth.sessions import SessionSigner
from regserve.auth.tokens import hash_token

TOKEN = "rsp_example-token"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_names_its_token_by_hash_until_it_expires() -> None:
    clock = Clock()
    signer = SessionSigner("admin-token", lifetime=3600, clock=clock)
    cookie = signer.issue(hash_token(TOKEN))
    assert TOKEN not in cookie
    assert signer.token_hash(cookie) == hash_token(TOKEN)
    clock.now += 3599
    assert signer.token_hash(cookie) == hash_token(TOKEN)
    clock.now += 1
    assert signer.token_hash(cookie) is None


def test_forged_altered_and_foreign_sessions_are_refused() -> None:
    clock = Clock()
    signer = SessionSigner("admin-token", lifetime=3600, clock=clock)
    cookie = signer.issue(hash_token(TOKEN))
    version, token_hash, expiry, mac = cookie.split(".")
    later = str(int(expiry) + 10**6)
    other = hash_token("rsp_someone-else")
    for forged in (
        f"{version}.{token_hash}.{later}.{mac}",  # a longer life
        f"{version}.{other}.{expiry}.{mac}",  # another token
        f"v2.{token_hash}.{expiry}.{mac}",  # an unknown format
        f"{version}.{token_hash}.{expiry}.{mac[:-1]}{'1' if mac.endswith('0') else '0'}",
        TOKEN,  # a raw token, as cookies held before
        "",
        "v1...",
    ):
        assert signer.token_hash(forged) is None, forged
    # Another deployment (another admin token) signs with another key.
    assert SessionSigner("another-admin", 3600, clock).token_hash(cookie) is None
