"""The access service in process, on a real SQLite state store, with a clock the test moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from regserve.auth.service import AccessService
from regserve.auth.tokens import hash_token, new_token, new_token_id
from regserve.settings import Settings
from regserve.store import PrincipalRecord, StateStore, TokenRecord

ADMIN_TOKEN = "rsp_bootstrap-admin-token-for-tests"
NOW = 1_800_000_000.0


class Clock:
    """A wall clock that only moves when told."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def access(store: StateStore, clock: Clock, tmp_path: Path) -> AccessService:
    """The service as a gateway builds it, with a long cache so that only invalidation (not
    expiry) refreshes it, and the bootstrap admin made."""
    settings = Settings(data_dir=tmp_path, auth_cache_ttl=3600)
    service = AccessService(settings, store, ADMIN_TOKEN, clock)
    service.bootstrap()
    return service


def add_user(store: StateStore, name: str, **flags: bool) -> PrincipalRecord:
    return store.create_principal(name, "user", created_at=int(NOW * 1000), **flags)


def add_token(store: StateStore, principal: PrincipalRecord, expiry_ms: int = -1) -> str:
    """A new token of ``principal`` (its value, which only its hash is stored for)."""
    value = new_token()
    record = TokenRecord(new_token_id(), principal.id, "test", int(NOW * 1000), expiry_ms, "admin")
    store.add_token(record, hash_token(value))
    return value


def bearer(token: str) -> bytes:
    return f"Bearer {token}".encode()
