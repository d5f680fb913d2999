"""The access service on a real store: who a token is, what a principal may do, and when a
change made in the database is seen (at once through this process, within the TTL otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from regserve.auth.levels import PermissionLevel
from regserve.auth.service import BOOTSTRAP_ADMIN, AccessService, enable_refusal
from regserve.errors import PermissionDeniedError, RateLimitedError, UnauthenticatedError
from regserve.gateways.changes import GRANTS, TOKENS
from regserve.settings import Settings
from regserve.store import GrantRecord, StateStore

from .conftest import ADMIN_TOKEN, Clock, add_token, add_user, bearer

READ = GrantRecord("group", "users", "CAN_READ")


async def test_a_token_names_its_principal_and_a_bad_one_is_refused(
    access: AccessService, store: StateStore
) -> None:
    alice = add_user(store, "alice")
    identity = await access.authenticate(bearer(add_token(store, alice)))
    assert (identity.name, identity.is_admin, identity.expiry_time) == ("alice", False, -1)
    with pytest.raises(UnauthenticatedError, match="Invalid access token"):
        await access.authenticate(bearer("rsp_nobody-holds-this"))
    with pytest.raises(UnauthenticatedError, match="Missing credentials"):
        await access.authenticate(None)


async def test_the_bootstrap_token_is_the_admin_who_manages_every_model(
    access: AccessService,
) -> None:
    admin = await access.authenticate(bearer(ADMIN_TOKEN))
    assert (admin.name, admin.is_admin) == (BOOTSTRAP_ADMIN, True)
    assert await access.level(admin, "any-model") is PermissionLevel.CAN_MANAGE
    assert await access.readable(admin, ["b", "a"]) == ["b", "a"]


async def test_an_expired_token_is_refused(
    access: AccessService, store: StateStore, clock: Clock
) -> None:
    token = add_token(store, add_user(store, "bob"), expiry_ms=int((clock.now + 60) * 1000))
    assert (await access.authenticate(bearer(token))).name == "bob"
    clock.now += 61
    with pytest.raises(UnauthenticatedError, match="expired"):
        await access.authenticate(bearer(token))


async def test_a_revoked_token_works_until_its_cache_entry_is_forgotten(
    access: AccessService, store: StateStore
) -> None:
    carol = add_user(store, "carol")
    token = add_token(store, carol)
    told: list[tuple[str, str]] = []
    access.on_change = lambda kind, key: told.append((kind, key))
    identity = await access.authenticate(bearer(token))
    store.revoke_token(identity.token_id, revoked_at=1)
    # Revoked by another gateway: this one answers from memory until the change reaches it.
    assert (await access.authenticate(bearer(token))).name == "carol"
    access.forget_tokens(broadcast=False)
    with pytest.raises(UnauthenticatedError, match="Invalid access token"):
        await access.authenticate(bearer(token))
    assert told == []  # a change heard from elsewhere is not sent on
    access.forget_tokens()
    assert told == [(TOKENS, "")]


async def test_a_deactivated_principal_is_refused_once_tokens_are_forgotten(
    access: AccessService, store: StateStore
) -> None:
    dave = add_user(store, "dave")
    token = add_token(store, dave)
    await access.authenticate(bearer(token))
    store.update_principal(dave.id, active=False)
    access.forget_tokens()
    with pytest.raises(UnauthenticatedError, match="'dave' is deactivated"):
        await access.authenticate(bearer(token))


async def test_grants_to_a_principal_and_to_every_user_add_up(
    access: AccessService, store: StateStore
) -> None:
    erin = add_user(store, "erin")
    store.put_grants("fraud", [READ], replace=False)
    store.put_grants("churn", [GrantRecord("principal", str(erin.id), "CAN_EDIT")], replace=False)
    store.put_grants("churn", [READ], replace=False)
    identity = await access.authenticate(bearer(add_token(store, erin)))
    assert await access.level(identity, "fraud") is PermissionLevel.CAN_READ
    assert await access.level(identity, "churn") is PermissionLevel.CAN_EDIT
    assert await access.level(identity, "secret") is PermissionLevel.NONE
    assert await access.readable(identity, ["secret", "fraud", "churn"]) == ["fraud", "churn"]
    await access.require(identity, "churn", PermissionLevel.CAN_EDIT, "register versions")
    with pytest.raises(PermissionDeniedError) as denied:
        await access.require(identity, "fraud", PermissionLevel.CAN_EDIT, "register versions")
    assert denied.value.message == (
        "'erin' lacks CAN_EDIT on registered model 'fraud', which is needed to register versions."
    )


async def test_the_admins_group_grant_applies_to_admins_only(
    access: AccessService, store: StateStore
) -> None:
    root = add_user(store, "root", is_admin=True)
    frank = add_user(store, "frank")
    store.put_grants("m", [GrantRecord("group", "admins", "CAN_READ")], replace=False)
    as_frank = await access.authenticate(bearer(add_token(store, frank)))
    as_root = await access.authenticate(bearer(add_token(store, root)))
    assert await access.level(as_frank, "m") is PermissionLevel.NONE
    assert await access.level(as_root, "m") is PermissionLevel.CAN_MANAGE  # admins manage all


async def test_changed_grants_are_seen_once_forgotten_and_other_gateways_are_told(
    access: AccessService, store: StateStore
) -> None:
    grace = add_user(store, "grace")
    identity = await access.authenticate(bearer(add_token(store, grace)))
    told: list[tuple[str, str]] = []
    access.on_change = lambda kind, key: told.append((kind, key))
    assert await access.level(identity, "m") is PermissionLevel.NONE
    store.put_grants("m", [GrantRecord("principal", str(grace.id), "CAN_MANAGE")], replace=False)
    assert await access.level(identity, "m") is PermissionLevel.NONE  # cached
    access.forget_grants("other")
    assert await access.level(identity, "m") is PermissionLevel.NONE  # another model's entry
    access.forget_grants("m")
    assert await access.level(identity, "m") is PermissionLevel.CAN_MANAGE
    store.put_grants("m", [], replace=True)
    access.forget_grants()  # all of them (a principal was deleted)
    assert await access.level(identity, "m") is PermissionLevel.NONE
    assert told == [(GRANTS, "other"), (GRANTS, "m"), (GRANTS, "")]


async def test_owners_are_cached_with_nobody_as_an_answer(
    access: AccessService, store: StateStore
) -> None:
    heidi = add_user(store, "heidi")
    assert await access.owner("run", "r1") is None
    store.record_owner("run", "r1", heidi.id, created_at=1)
    assert await access.owner("run", "r1") is None  # "nobody" was cached
    access.forget_owner("run", "r1")
    assert await access.owner("run", "r1") == heidi.id


async def test_enabling_needs_manage_and_the_cluster_entitlement(
    access: AccessService, store: StateStore
) -> None:
    ivan = await access.authenticate(bearer(add_token(store, add_user(store, "ivan"))))
    judy_principal = add_user(store, "judy", allow_cluster_create=True)
    judy = await access.authenticate(bearer(add_token(store, judy_principal)))
    assert "lacks CAN_MANAGE" in (enable_refusal(ivan, PermissionLevel.CAN_EDIT, "m") or "")
    refusal = enable_refusal(ivan, PermissionLevel.CAN_MANAGE, "m") or ""
    assert "allow-cluster-create" in refusal
    assert enable_refusal(judy, PermissionLevel.CAN_MANAGE, "m") is None


async def test_each_token_has_its_own_rate_limit(
    store: StateStore, clock: Clock, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, rate_limit_rps=1)
    access = AccessService(settings, store, ADMIN_TOKEN, clock)
    kim = add_user(store, "kim")
    first, second = add_token(store, kim), add_token(store, kim)
    await access.authenticate(bearer(first))
    with pytest.raises(RateLimitedError):
        await access.authenticate(bearer(first))
    assert (await access.authenticate(bearer(second))).name == "kim"
