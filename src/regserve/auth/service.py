"""Who is calling and what they may do: authentication and permission checks, cached.

The scoring path calls :meth:`AccessService.authenticate` and :meth:`AccessService.require`
on every request. Both answer from memory after the first request of a token or model (entries
live ``REGSERVE_AUTH_CACHE_TTL`` seconds, bounded by ``REGSERVE_AUTH_CACHE_SIZE``) and go to
the database only on a miss. Changes made through this process drop the affected entries at
once; changes made through another gateway on the same database too, through the change feed
(``regserve.gateways.changes``: ``on_change`` sends, ``forget_*(broadcast=False)`` applies),
and within the TTL at worst.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from regserve.auth.cache import TTLCache
from regserve.auth.credentials import token_from_header
from regserve.auth.file_grants import FileGrants
from regserve.auth.levels import ADMINS_GROUP, ALL_USERS_GROUP, PermissionLevel
from regserve.auth.ratelimit import RateLimiter
from regserve.auth.sessions import SessionSigner
from regserve.auth.tokens import hash_token
from regserve.errors import PermissionDeniedError, UnauthenticatedError
from regserve.gateways.changes import GRANTS, TOKENS
from regserve.settings import Settings
from regserve.store import GrantRecord, PrincipalRecord, StateStore

__all__ = [
    "BOOTSTRAP_ADMIN",
    "BOOTSTRAP_TOKEN_ID",
    "AccessService",
    "Identity",
    "enable_refusal",
]

BOOTSTRAP_ADMIN = "admin"
"""The principal the bootstrap admin token (REGSERVE_ADMIN_TOKEN / admin-token) stands for."""
BOOTSTRAP_TOKEN_ID = "bootstrap"


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: the principal and the token it came with."""

    principal: PrincipalRecord
    token_id: str
    expiry_time: int
    """Milliseconds since the epoch; -1: never."""

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin


_UNKNOWN = "unknown"  # cached negative answer: no live token has this hash


class AccessService:
    """Authenticates tokens and checks model permissions, from memory when it can."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        admin_token: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._admin_hash = hash_token(admin_token)
        self._admin: Identity | None = None
        self._clock = clock
        ttl, size = settings.auth_cache_ttl, settings.auth_cache_size
        self._tokens: TTLCache[str, Identity | str] = TTLCache(ttl, size)
        self._grants: TTLCache[str, tuple[GrantRecord, ...]] = TTLCache(ttl, size)
        self._owners: TTLCache[tuple[str, str], int] = TTLCache(ttl, size)
        rate = settings.rate_limit_rps
        self._limiter = RateLimiter(rate) if rate else None
        self.sessions = SessionSigner(admin_token, settings.ui_session_hours * 3600, clock)
        """Signs the UI's session cookies (:mod:`.sessions`)."""
        self.file_grants = FileGrants(admin_token)
        """Signs the credentials Ray replicas fetch their version's files with
        (:mod:`.file_grants`)."""
        self.on_change: Callable[[str, str], None] | None = None
        """Told of every change forgotten here (kind, key): how other gateways hear of it."""

    def bootstrap(self) -> None:
        """Make sure the bootstrap admin principal exists (blocking; once at start-up)."""
        principal = self._store.ensure_admin_principal(BOOTSTRAP_ADMIN, self._now_ms())
        self._admin = Identity(principal, BOOTSTRAP_TOKEN_ID, -1)

    # -- authentication ----------------------------------------------------------------------

    async def authenticate(self, header: bytes | None) -> Identity:
        """The caller of an ``Authorization`` header; UnauthenticatedError otherwise.

        Also takes one request from the token's rate limit (RateLimitedError when empty).
        """
        return await self._authenticate(hash_token(token_from_header(header)))

    async def authenticate_session(self, cookie: str) -> Identity:
        """The caller of a UI session cookie (:meth:`session_for`), checked like its token."""
        token_hash = self.sessions.token_hash(cookie)
        if token_hash is None:
            raise UnauthenticatedError("The UI session expired or is not valid: sign in again.")
        return await self._authenticate(token_hash)

    def session_for(self, token: str) -> str:
        """A UI session cookie for ``token`` (authenticate it first)."""
        return self.sessions.issue(hash_token(token))

    async def _authenticate(self, token_hash: str) -> Identity:
        identity = self._identity(token_hash)
        if identity is None:
            found = await asyncio.to_thread(self._load_identity, token_hash)
            self._tokens.put(token_hash, found or _UNKNOWN)
            identity = found
        if identity is None:
            raise UnauthenticatedError("Invalid access token.")
        if not identity.principal.active:
            raise UnauthenticatedError(
                f"'{identity.name}' is deactivated: an admin can activate it again."
            )
        if 0 <= identity.expiry_time <= self._now_ms():
            raise UnauthenticatedError("Access token expired: create a new one.")
        if self._limiter is not None:
            self._limiter.check(identity.token_id)
        return identity

    def _identity(self, token_hash: str) -> Identity | None:
        # Compared in constant time; stored tokens are found by their hash, which reveals
        # nothing about the value through timing.
        if self._admin is not None and hmac.compare_digest(token_hash, self._admin_hash):
            return self._admin
        cached = self._tokens.get(token_hash)
        if cached == _UNKNOWN:
            raise UnauthenticatedError("Invalid access token.")
        return cached if isinstance(cached, Identity) else None

    def _load_identity(self, token_hash: str) -> Identity | None:
        found = self._store.token_by_hash(token_hash)
        if found is None:
            return None
        token, principal = found
        if token.revoked_at is not None:
            return None
        return Identity(principal, token.token_id, token.expiry_time)

    def forget_tokens(self, *, broadcast: bool = True) -> None:
        """Drop every cached token (a token was revoked, or a principal changed); with
        ``broadcast``, the other gateways on this database drop theirs too."""
        self._tokens.clear()
        if broadcast and self.on_change is not None:
            self.on_change(TOKENS, "")

    # -- authorization -----------------------------------------------------------------------

    async def level(self, identity: Identity, model: str) -> PermissionLevel:
        """The highest level ``identity`` holds on ``model``: admins hold CAN_MANAGE on all."""
        if identity.is_admin:
            return PermissionLevel.CAN_MANAGE
        return level_from_grants(await self.grants(model), identity.principal)

    async def require(
        self, identity: Identity, model: str, needed: PermissionLevel, action: str
    ) -> None:
        """PermissionDeniedError unless ``identity`` holds ``needed`` on ``model``."""
        if await self.level(identity, model) < needed:
            raise PermissionDeniedError(
                f"'{identity.name}' lacks {needed.name} on registered model '{model}', "
                f"which is needed to {action}."
            )

    def require_admin(self, identity: Identity, action: str) -> None:
        if not identity.is_admin:
            raise PermissionDeniedError(f"Only admins may {action}; '{identity.name}' is not one.")

    async def readable(self, identity: Identity, models: Iterable[str]) -> list[str]:
        """The models of ``models`` that ``identity`` may read, in the same order."""
        names = list(models)
        if identity.is_admin:
            return names
        return [m for m in names if await self.level(identity, m) >= PermissionLevel.CAN_READ]

    async def grants(self, model: str) -> tuple[GrantRecord, ...]:
        cached = self._grants.get(model)
        if cached is None:
            cached = tuple(await asyncio.to_thread(self._store.get_grants, model))
            self._grants.put(model, cached)
        return cached

    async def owner(self, kind: str, object_id: str) -> int | None:
        """The id of the principal who created the run or logged model (``kind``: ``run`` or
        ``logged_model``), or None when nobody regserve knows did."""
        key = (kind, object_id)
        cached = self._owners.get(key)
        if cached is None:
            found = await asyncio.to_thread(self._store.owner_of, kind, object_id)
            cached = found or 0  # principal ids start at 1; 0 caches "nobody"
            self._owners.put(key, cached)
        return cached or None

    def forget_owner(self, kind: str, object_id: str) -> None:
        """Drop the cached owner of a run or logged model (it was just recorded)."""
        self._owners.pop((kind, object_id))

    def forget_grants(self, *models: str, broadcast: bool = True) -> None:
        """Drop the cached ACLs of ``models`` (they changed), or all of them when none is
        named (a principal's grants and runs went with it); with ``broadcast``, on every
        gateway."""
        if not models:
            self._grants.clear()
            self._owners.clear()
        for model in models:
            self._grants.pop(model)
        if broadcast and self.on_change is not None:
            for model in models or ("",):
                self.on_change(GRANTS, model)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def level_from_grants(grants: Iterable[GrantRecord], principal: PrincipalRecord) -> PermissionLevel:
    """The highest level the ACL gives ``principal``: directly or through a group."""
    best = PermissionLevel.NONE
    for grant in grants:
        if grant.grantee_type == "principal":
            applies = grant.grantee == str(principal.id)
        else:
            applies = grant.grantee == ALL_USERS_GROUP or (
                grant.grantee == ADMINS_GROUP and principal.is_admin
            )
        if applies:
            best = max(best, PermissionLevel[grant.level])
    return best


def enable_refusal(identity: Identity, level: PermissionLevel, model: str) -> str | None:
    """Why ``identity`` (holding ``level`` on ``model``) may not enable serving; None if it may.

    Enabling needs CAN_MANAGE and the allow-cluster-create entitlement, as in Databricks.
    """
    if level < PermissionLevel.CAN_MANAGE:
        return (
            f"'{identity.name}' lacks CAN_MANAGE on registered model '{model}', "
            "which is needed to enable serving."
        )
    if not (identity.is_admin or identity.principal.allow_cluster_create):
        return (
            f"'{identity.name}' lacks the allow-cluster-create entitlement, which enabling "
            "serving needs besides CAN_MANAGE. An admin can grant it."
        )
    return None
