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
from regserve.store import PrincipalRecord

__all__ = ["ENTITLEMENT", "build_principals_router", "principal_json"]

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


_FLAGS = {"entitlements": (ENTITLEMENT, "allow_cluster_create"),
          "groups": (ADMINS_GROUP, "is_admin")}  # fmt: skip


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


def build_principals_router() -> APIRouter:
    router = APIRouter()

    async def create(request: Request, name: str, kind: str, body: _PrincipalRequest) -> Any:
        principal = await services_of(request).manager.create_principal(
            identity_of(request), name, kind,
            is_admin=any(g.value == ADMINS_GROUP for g in body.groups),
            allow_cluster_create=any(e.value == ENTITLEMENT for e in body.entitlements),
        )  # fmt: skip
        return principal_json(principal)

    async def listing(request: Request, kind: str) -> dict[str, Any]:
        found = await services_of(request).manager.list_principals(identity_of(request), kind)
        return {"totalResults": len(found), "Resources": [principal_json(p) for p in found]}

    @router.post(f"{SCIM}/ServicePrincipals", summary="Create a service principal (admins)")
    async def create_sp(request: Request, body: ServicePrincipalRequest) -> dict[str, Any]:
        return dict(await create(request, body.displayName, "service_principal", body))

    @router.get(f"{SCIM}/ServicePrincipals", summary="Every service principal (admins)")
    async def list_sps(request: Request) -> dict[str, Any]:
        return await listing(request, "service_principal")

    @router.post(f"{SCIM}/Users", summary="Create a user (admins)")
    async def create_user(request: Request, body: UserRequest) -> dict[str, Any]:
        return dict(await create(request, body.userName, "user", body))

    @router.get(f"{SCIM}/Users", summary="Every user (admins)")
    async def list_users(request: Request) -> dict[str, Any]:
        return await listing(request, "user")

    for collection, kind in (("Users", "user"), ("ServicePrincipals", "service_principal")):
        _one_principal_routes(router, collection, kind)

    @router.get(f"{SCIM}/Me", summary="The caller")
    async def me(request: Request) -> dict[str, Any]:
        return principal_json(identity_of(request).principal)

    @router.get("/api/2.0/regserve/audit-events", summary="Who changed what (admins)")
    async def audit_events(
        request: Request, max_events: int = Query(500, ge=1, le=10_000)
    ) -> dict[str, Any]:
        services = services_of(request)
        services.access.require_admin(identity_of(request), "read the audit log")
        store = services.store
        rows = await asyncio.to_thread(store.list_audit_events, max_events)
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

    return router


def _one_principal_routes(router: APIRouter, collection: str, kind: str) -> None:
    noun = "user" if kind == "user" else "service principal"

    async def get_one(request: Request, principal_id: str) -> dict[str, Any]:
        manager = services_of(request).manager
        return principal_json(
            await manager.principal_by_id(identity_of(request), principal_id, kind)
        )

    async def patch_one(request: Request, principal_id: str, body: PatchRequest) -> dict[str, Any]:
        manager, actor = services_of(request).manager, identity_of(request)
        principal = await manager.principal_by_id(actor, principal_id, kind)
        changes = patch_changes(body.Operations)
        return principal_json(await manager.update_principal(actor, principal, **changes))

    async def delete_one(request: Request, principal_id: str) -> dict[str, Any]:
        manager, actor = services_of(request).manager, identity_of(request)
        principal = await manager.principal_by_id(actor, principal_id, kind)
        await manager.delete_principal(actor, principal)
        return {}

    path = f"{SCIM}/{collection}/{{principal_id}}"
    router.add_api_route(path, get_one, methods=["GET"], summary=f"One {noun} (admins)")
    router.add_api_route(
        path, patch_one, methods=["PATCH"],
        summary=f"Deactivate, activate or change a {noun}'s admin group or entitlement (admins)",
    )  # fmt: skip
    router.add_api_route(
        path, delete_one, methods=["DELETE"],
        summary=f"Delete a {noun} with its tokens and permissions (admins)",
    )  # fmt: skip
