"""Changing who may do what: principals, tokens and model ACLs, each change audited.

Every change drops the affected entries of :class:`AccessService`'s caches, and records an
event naming the principal who made it: permission changes on the model's own event history,
token changes (which belong to no model) under the model name ``""``; all of them are listed
by the admin-only audit API.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from regserve.auth.levels import GROUPS, PermissionLevel
from regserve.auth.service import BOOTSTRAP_ADMIN, AccessService, Identity
from regserve.auth.tokens import hash_token, new_token, new_token_id
from regserve.errors import InvalidParameterError, NotFoundError
from regserve.settings import Settings
from regserve.store import GrantRecord, PrincipalRecord, StateStore, TokenRecord

__all__ = ["TOKEN_EVENTS_MODEL", "AccessManager", "AclEntry"]

TOKEN_EVENTS_MODEL = ""
"""The model name token events are recorded under: no registered model can have it."""


@dataclass(frozen=True)
class AclEntry:
    """An ACL entry as the API speaks it: who (by kind and name) and the level."""

    kind: str
    """``user_name``, ``service_principal_name`` or ``group_name``."""
    name: str
    level: PermissionLevel
    display_name: str = ""
    inherited: bool = False


class AccessManager:
    """Creates principals and tokens and edits model ACLs, on behalf of an identity."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        access: AccessService,
        model_exists: Callable[[str], Awaitable[bool]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._access = access
        self._model_exists = model_exists
        self._max_lifetime = settings.max_token_lifetime or 0
        self._clock = clock

    # -- principals --------------------------------------------------------------------------

    async def create_principal(
        self,
        actor: Identity,
        name: str,
        kind: str,
        *,
        is_admin: bool = False,
        allow_cluster_create: bool = False,
    ) -> PrincipalRecord:
        self._access.require_admin(actor, "create principals")
        if not name.strip() or name in GROUPS:
            raise InvalidParameterError(f"'{name}' cannot name a principal.")
        app_id = str(uuid.uuid4()) if kind == "service_principal" else None
        principal = await asyncio.to_thread(
            self._store.create_principal,
            name.strip(),
            kind,
            application_id=app_id,
            is_admin=is_admin,
            allow_cluster_create=allow_cluster_create,
            created_at=self._now_ms(),
        )
        await self._audit(
            TOKEN_EVENTS_MODEL,
            "PRINCIPAL_CREATED",
            actor,
            f"{_kind(kind)} '{principal.name}' created by '{actor.name}'"
            f"{' (admin)' if is_admin else ''}"
            f"{' with allow-cluster-create' if allow_cluster_create else ''}.",
        )
        return principal

    async def update_principal(
        self,
        actor: Identity,
        principal: PrincipalRecord,
        *,
        active: bool | None = None,
        is_admin: bool | None = None,
        allow_cluster_create: bool | None = None,
    ) -> PrincipalRecord:
        """Activate or deactivate a principal, or change its admin flag or entitlement."""
        self._access.require_admin(actor, "change principals")
        self._not_bootstrap(principal, "changed")
        updated = await asyncio.to_thread(
            self._store.update_principal,
            principal.id,
            active=active,
            is_admin=is_admin,
            allow_cluster_create=allow_cluster_create,
        )
        if updated is None:
            raise NotFoundError(f"No principal with id {principal.id}.")
        self._access.forget_tokens()
        changes = [
            f"{what} {'on' if value else 'off'}"
            for what, value in (
                ("active", active),
                ("admin", is_admin),
                ("allow-cluster-create", allow_cluster_create),
            )
            if value is not None
        ]
        await self._audit(
            TOKEN_EVENTS_MODEL,
            "PRINCIPAL_UPDATED",
            actor,
            f"{_kind(updated.kind)} '{updated.name}' changed by '{actor.name}': "
            f"{', '.join(changes) or 'nothing'}.",
        )
        return updated

    async def delete_principal(self, actor: Identity, principal: PrincipalRecord) -> None:
        """Remove a principal, its tokens and its direct grants on every model."""
        self._access.require_admin(actor, "delete principals")
        self._not_bootstrap(principal, "deleted")
        if await asyncio.to_thread(self._store.delete_principal, principal.id) is None:
            raise NotFoundError(f"No principal with id {principal.id}.")
        self._access.forget_tokens()
        self._access.forget_grants()
        await self._audit(
            TOKEN_EVENTS_MODEL,
            "PRINCIPAL_DELETED",
            actor,
            f"{_kind(principal.kind)} '{principal.name}' deleted by '{actor.name}', with its "
            "tokens and permissions.",
        )

    @staticmethod
    def _not_bootstrap(principal: PrincipalRecord, what: str) -> None:
        if principal.name == BOOTSTRAP_ADMIN:
            raise InvalidParameterError(
                f"The bootstrap admin '{BOOTSTRAP_ADMIN}' cannot be {what}: it stands for the "
                "admin token of the installation (REGSERVE_ADMIN_TOKEN / admin-token)."
            )

    async def list_principals(self, actor: Identity, kind: str | None) -> list[PrincipalRecord]:
        self._access.require_admin(actor, "list principals")
        return await asyncio.to_thread(self._store.list_principals, kind)

    async def principal_by_id(
        self, actor: Identity, principal_id: str, kind: str
    ) -> PrincipalRecord:
        """The principal of a SCIM id (as the API lists it) and kind (admins only)."""
        self._access.require_admin(actor, "read or change principals")
        found = (
            await asyncio.to_thread(self._store.get_principal, int(principal_id))
            if principal_id.isascii() and principal_id.isdigit() and len(principal_id) <= 18
            else None
        )
        if found is None or found.kind != kind:
            raise NotFoundError(f"No {_kind(kind).lower()} with id '{principal_id}'.")
        return found

    async def principal(self, key: str, kind: str | None = None) -> PrincipalRecord:
        found = await asyncio.to_thread(self._store.find_principal, key, kind)
        if found is None:
            raise NotFoundError(f"No {_kind(kind or 'principal').lower()} '{key}'.")
        return found

    # -- tokens ------------------------------------------------------------------------------

    async def create_token(
        self,
        actor: Identity,
        lifetime_seconds: int | None,
        comment: str,
        owner: PrincipalRecord | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token for ``owner`` (admins only) or the actor; the value is returned once."""
        if owner is not None and owner.id != actor.principal.id:
            self._access.require_admin(actor, "create tokens for other principals")
        owner = owner or actor.principal
        now = self._now_ms()
        lifetime = self._lifetime(lifetime_seconds)
        record = TokenRecord(
            new_token_id(),
            owner.id,
            comment,
            now,
            now + lifetime * 1000 if lifetime else -1,
            actor.name,
        )
        value = new_token()
        await asyncio.to_thread(self._store.add_token, record, hash_token(value))
        await self._audit(
            TOKEN_EVENTS_MODEL,
            "TOKEN_CREATED",
            actor,
            f"Token {record.token_id} for '{owner.name}' created by '{actor.name}' "
            f"({_expiry(lifetime)}).",
        )
        return value, record

    def _lifetime(self, asked: int | None) -> int | None:
        if asked is None or asked <= 0:
            return self._max_lifetime or None
        if self._max_lifetime and asked > self._max_lifetime:
            raise InvalidParameterError(
                f"lifetime_seconds {asked} exceeds the maximum token lifetime of "
                f"{self._max_lifetime} s set by the admin (REGSERVE_MAX_TOKEN_LIFETIME)."
            )
        return asked

    async def list_tokens(
        self, actor: Identity, everyone: bool = False
    ) -> list[tuple[TokenRecord, PrincipalRecord | None]]:
        """The actor's live tokens, or (admins) everyone's, with their owners."""
        if everyone:
            self._access.require_admin(actor, "list other principals' tokens")
        owner_id = None if everyone else actor.principal.id
        tokens = await asyncio.to_thread(self._store.list_tokens, owner_id)
        owners = {p.id: p for p in await asyncio.to_thread(self._store.list_principals, None)}
        return [(t, owners.get(t.principal_id)) for t in tokens]

    async def revoke_token(self, actor: Identity, token_id: str, anyone: bool = False) -> None:
        """Revoke one of the actor's tokens, or (admins, ``anyone``) any token."""
        if anyone:
            self._access.require_admin(actor, "revoke other principals' tokens")
        owner_id = None if anyone else actor.principal.id
        revoked = await asyncio.to_thread(
            self._store.revoke_token, token_id, self._now_ms(), owner_id
        )
        if revoked is None:
            raise NotFoundError(f"No live token with token_id '{token_id}'.")
        self._access.forget_tokens()
        await self._audit(
            TOKEN_EVENTS_MODEL,
            "TOKEN_REVOKED",
            actor,
            f"Token {token_id} revoked by '{actor.name}'.",
        )

    # -- model permissions -------------------------------------------------------------------

    async def acl(self, actor: Identity, model: str, *, checked: bool = False) -> list[AclEntry]:
        """The model's ACL: its direct entries, then admins' inherited CAN_MANAGE.

        ``checked``: the caller's right to read it was established (it just changed it)."""
        if not checked:
            await self._access.require(
                actor, model, PermissionLevel.CAN_READ, "read its permissions"
            )
        await self._existing(model)
        principals = {
            str(p.id): p for p in await asyncio.to_thread(self._store.list_principals, None)
        }
        entries = []
        for grant in await self._access.grants(model):
            level = PermissionLevel[grant.level]
            if grant.grantee_type == "group":
                entries.append(AclEntry("group_name", grant.grantee, level, grant.grantee))
            elif (p := principals.get(grant.grantee)) is not None:
                entries.append(_entry(p, level))
        entries.append(AclEntry("group_name", "admins", PermissionLevel.CAN_MANAGE, "admins", True))
        return entries

    async def change_acl(
        self, actor: Identity, model: str, entries: list[AclEntry], *, replace: bool
    ) -> None:
        """Set the entries (PATCH); ``replace`` makes them the whole direct ACL (PUT)."""
        await self._access.require(
            actor, model, PermissionLevel.CAN_MANAGE, "change its permissions"
        )
        await self._existing(model)
        grants = [await self._grant(e) for e in entries]
        await asyncio.to_thread(self._store.put_grants, model, grants, replace=replace)
        self._access.forget_grants(model)
        listed = ", ".join(f"{e.name} {e.level.name}" for e in entries) or "nobody"
        verb = "set to" if replace else "updated:"
        await self._audit(
            model,
            "PERMISSIONS_CHANGED",
            actor,
            f"Permissions {verb} {listed}, by '{actor.name}'.",
        )

    async def grant_creator(self, actor: Identity, model: str) -> None:
        """Whoever creates a registered model through regserve gets CAN_MANAGE on it."""
        grant = GrantRecord("principal", str(actor.principal.id), "CAN_MANAGE")
        await asyncio.to_thread(self._store.put_grants, model, [grant], replace=True)
        self._access.forget_grants(model)
        await self._audit(
            model,
            "PERMISSIONS_CHANGED",
            actor,
            f"'{actor.name}' created the registered model and holds CAN_MANAGE on it.",
        )

    async def model_renamed(self, old: str, new: str) -> None:
        await asyncio.to_thread(self._store.rename_grants, old, new)
        self._access.forget_grants(old, new)

    async def model_deleted(self, model: str) -> None:
        await asyncio.to_thread(self._store.drop_grants, model)
        self._access.forget_grants(model)

    async def record_owner(self, actor: Identity, kind: str, object_id: str) -> None:
        """``actor`` created the run or logged model ``object_id``: its files are theirs."""
        await asyncio.to_thread(
            self._store.record_owner, kind, object_id, actor.principal.id, self._now_ms()
        )
        self._access.forget_owner(kind, object_id)

    async def _grant(self, entry: AclEntry) -> GrantRecord:
        if entry.kind == "group_name":
            if entry.name not in GROUPS:
                raise InvalidParameterError(
                    f"Unknown group '{entry.name}'. Groups: {', '.join(GROUPS)}."
                )
            return GrantRecord("group", entry.name, entry.level.name)
        kind = "user" if entry.kind == "user_name" else "service_principal"
        found = await asyncio.to_thread(self._store.find_principal, entry.name, kind)
        if found is None:
            raise InvalidParameterError(f"No {_kind(kind).lower()} '{entry.name}'.")
        return GrantRecord("principal", str(found.id), entry.level.name)

    async def _existing(self, model: str) -> None:
        if not await self._model_exists(model):
            raise NotFoundError(f"Registered model '{model}' does not exist.")

    # -- audit -------------------------------------------------------------------------------

    async def _audit(self, model: str, event_type: str, actor: Identity, message: str) -> None:
        await asyncio.to_thread(self._store.add_event, model, event_type, message, None, actor.name)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _entry(principal: PrincipalRecord, level: PermissionLevel) -> AclEntry:
    if principal.kind == "service_principal":
        assert principal.application_id is not None
        return AclEntry("service_principal_name", principal.application_id, level, principal.name)
    return AclEntry("user_name", principal.name, level, principal.name)


def _kind(kind: str) -> str:
    return {"user": "User", "service_principal": "Service principal"}.get(kind, "Principal")


def _expiry(lifetime: int | None) -> str:
    return f"expires in {lifetime} s" if lifetime else "never expires"
