"""Users and service principals, in a small subset of Databricks' SCIM shapes; the audit log.

regserve has no login of its own: an admin creates principals here and issues their first
token through ``/api/2.0/token-management/on-behalf-of/tokens``. A SCIM PATCH (``PatchOp``)
deactivates or activates a principal and adds or removes its admin group and its
``allow-cluster-create`` entitlement; DELETE removes it with its tokens and grants.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from regserve.auth.levels import ADMINS_GROUP, ALL_USERS_GROUP
from regserve.errors import InvalidParameterError
from regserve.gateway.context import identity_of, services_of
from regserve.gateway.json_route import JsonBodyRoute
from regserve.store import PrincipalRecord

__all__ = ["ENTITLEMENT", "principal_json", "router"]

SCIM = "/api/2.0/preview/scim/v2"
ENTITLEMENT = "allow-cluster-create"


class Value(BaseModel):
    value: str


class _PrincipalRequest(BaseModel):
    entitlements: list[Value] = Field(
        default_factory=list, description=f"[{{'value': '{ENTITLEMENT}'}}] lets it enable serving."
    )
    groups: list[Value] = Field(
        default_factory=list, description=f"[{{'value': '{ADMINS_GROUP}'}}] makes it an admin."
    )


class ServicePrincipalRequest(_PrincipalRequest):
    displayName: str = Field(..., min_length=1, max_length=256)


class UserRequest(_PrincipalRequest):
    userName: str = Field(..., min_length=1, max_length=256)


class PatchOperation(BaseModel):
    op: Literal["add", "remove", "replace", "Add", "Remove", "Replace"]
    path: str = Field(
        ...,
        description='"active", "entitlements" or "groups"; a remove may also name the value, '
        'as in entitlements[value eq "allow-cluster-create"].',
    )
    value: bool | list[Value] | None = None


class PatchRequest(BaseModel):
    schemas: list[str] = Field(default_factory=list)
    Operations: list[PatchOperation] = Field(..., min_length=1)


_FLAGS = {
    "entitlements": (ENTITLEMENT, "allow_cluster_create"),
    "groups": (ADMINS_GROUP, "is_admin"),
}


def patch_changes(operations: list[PatchOperation]) -> dict[str, bool]:
    """What a SCIM PatchOp changes: ``active``, ``is_admin``, ``allow_cluster_create``."""
    changes: dict[str, bool] = {}
    for operation in operations:
        op = operation.op.lower()
        path, _, selector = operation.path.partition("[")
        if path == "active":
            if op == "remove" or not isinstance(operation.value, bool):
                raise InvalidParameterError('"active" takes a "replace" with true or false.')
            changes["active"] = operation.value
            continue
        if path not in _FLAGS:
            raise InvalidParameterError(
                f"Cannot change '{operation.path}': only active, entitlements and groups."
            )
        known, field = _FLAGS[path]
        values = {v.value for v in operation.value} if isinstance(operation.value, list) else set()
        if selector:
            values.add(selector.removesuffix("]").partition("eq")[2].strip().strip('"'))
        if values - {known} or not values:
            raise InvalidParameterError(f"{path} may only hold '{known}' here.")
        changes[field] = op != "remove"
    return changes


def principal_json(p: PrincipalRecord) -> dict[str, Any]:
    groups = [ALL_USERS_GROUP, *([ADMINS_GROUP] if p.is_admin else [])]
    data: dict[str, Any] = {
        "id": str(p.id),
        "active": p.active,
        "entitlements": [{"value": ENTITLEMENT}] if p.allow_cluster_create else [],
        "groups": [{"display": g, "value": g} for g in groups],
    }
    if p.kind == "service_principal":
        data.update(displayName=p.name, applicationId=p.application_id)
    else:
        data.update(userName=p.name, displayName=p.name)
    return data


router = APIRouter(route_class=JsonBodyRoute)


async def _create(
    request: Request, name: str, kind: str, body: _PrincipalRequest
) -> dict[str, Any]:
    principal = await services_of(request).manager.create_principal(
        identity_of(request),
        name,
        kind,
        is_admin=any(g.value == ADMINS_GROUP for g in body.groups),
        allow_cluster_create=any(e.value == ENTITLEMENT for e in body.entitlements),
    )
    return principal_json(principal)


async def _listing(request: Request, kind: str) -> dict[str, Any]:
    found = await services_of(request).manager.list_principals(identity_of(request), kind)
    return {"totalResults": len(found), "Resources": [principal_json(p) for p in found]}


@router.post(f"{SCIM}/ServicePrincipals", summary="Create a service principal (admins)")
async def create_sp(request: Request, body: ServicePrincipalRequest) -> dict[str, Any]:
    return await _create(request, body.displayName, "service_principal", body)


@router.get(f"{SCIM}/ServicePrincipals", summary="Every service principal (admins)")
async def list_sps(request: Request) -> dict[str, Any]:
    return await _listing(request, "service_principal")


@router.post(f"{SCIM}/Users", summary="Create a user (admins)")
async def create_user(request: Request, body: UserRequest) -> dict[str, Any]:
    return await _create(request, body.userName, "user", body)


@router.get(f"{SCIM}/Users", summary="Every user (admins)")
async def list_users(request: Request) -> dict[str, Any]:
    return await _listing(request, "user")


# One principal, by id: the same three routes for users and for service principals. The
# handlers are named get_one, patch_one and delete_one in both (the spec's operation ids).
_USERS = f"{SCIM}/Users/{{principal_id}}"
_SPS = f"{SCIM}/ServicePrincipals/{{principal_id}}"


def _patch_summary(noun: str) -> str:
    return f"Deactivate, activate or change a {noun}'s admin group or entitlement (admins)"


def _delete_summary(noun: str) -> str:
    return f"Delete a {noun} with its tokens and permissions (admins)"


async def _get_one(request: Request, principal_id: str, kind: str) -> dict[str, Any]:
    manager = services_of(request).manager
    return principal_json(await manager.principal_by_id(identity_of(request), principal_id, kind))


async def _patch_one(
    request: Request, principal_id: str, body: PatchRequest, kind: str
) -> dict[str, Any]:
    manager, actor = services_of(request).manager, identity_of(request)
    principal = await manager.principal_by_id(actor, principal_id, kind)
    changes = patch_changes(body.Operations)
    return principal_json(await manager.update_principal(actor, principal, **changes))


async def _delete_one(request: Request, principal_id: str, kind: str) -> dict[str, Any]:
    manager, actor = services_of(request).manager, identity_of(request)
    principal = await manager.principal_by_id(actor, principal_id, kind)
    await manager.delete_principal(actor, principal)
    return {}


@router.get(_USERS, name="get_one", summary="One user (admins)")
async def get_user(request: Request, principal_id: str) -> dict[str, Any]:
    return await _get_one(request, principal_id, "user")


@router.patch(_USERS, name="patch_one", summary=_patch_summary("user"))
async def patch_user(request: Request, principal_id: str, body: PatchRequest) -> dict[str, Any]:
    return await _patch_one(request, principal_id, body, "user")


@router.delete(_USERS, name="delete_one", summary=_delete_summary("user"))
async def delete_user(request: Request, principal_id: str) -> dict[str, Any]:
    return await _delete_one(request, principal_id, "user")


@router.get(_SPS, name="get_one", summary="One service principal (admins)")
async def get_sp(request: Request, principal_id: str) -> dict[str, Any]:
    return await _get_one(request, principal_id, "service_principal")


@router.patch(_SPS, name="patch_one", summary=_patch_summary("service principal"))
async def patch_sp(request: Request, principal_id: str, body: PatchRequest) -> dict[str, Any]:
    return await _patch_one(request, principal_id, body, "service_principal")


@router.delete(_SPS, name="delete_one", summary=_delete_summary("service principal"))
async def delete_sp(request: Request, principal_id: str) -> dict[str, Any]:
    return await _delete_one(request, principal_id, "service_principal")


@router.get(f"{SCIM}/Me", summary="The caller")
async def me(request: Request) -> dict[str, Any]:
    return principal_json(identity_of(request).principal)


@router.get("/api/2.0/regserve/audit-events", summary="Who changed what (admins)")
async def audit_events(
    request: Request, max_events: int = Query(500, ge=1, le=10_000)
) -> dict[str, Any]:
    services = services_of(request)
    services.access.require_admin(identity_of(request), "read the audit log")
    rows = await asyncio.to_thread(services.store.list_audit_events, max_events)
    return {
        "events": [
            {
                "timestamp": ts,
                **({"registered_model_name": model} if model else {}),
                "event_type": event_type,
                "message": message,
                "principal": principal,
            }
            for ts, model, event_type, message, principal in rows
        ]
    }
