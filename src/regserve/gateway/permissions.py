"""Permissions on registered models, in Databricks' shape:
``GET|PUT|PATCH /api/2.0/permissions/registered-models/{name}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, model_validator

from regserve.auth.levels import PermissionLevel
from regserve.auth.management import AclEntry
from regserve.gateway.context import identity_of, services_of
from regserve.gateway.json_route import JsonBodyRoute

__all__ = ["PERMISSIONS_PREFIX", "router"]

PERMISSIONS_PREFIX = "/api/2.0/permissions/registered-models"
_KINDS = ("user_name", "service_principal_name", "group_name")


class AccessControlRequest(BaseModel):
    user_name: str | None = None
    service_principal_name: str | None = Field(
        None, description="The service principal's application id (or its name)."
    )
    group_name: str | None = Field(None, description="'users' (everyone) or 'admins'.")
    permission_level: str

    @model_validator(mode="after")
    def _one_grantee(self) -> AccessControlRequest:
        if sum(getattr(self, k) is not None for k in _KINDS) != 1:
            raise ValueError("give exactly one of user_name, service_principal_name, group_name")
        return self

    def entry(self) -> AclEntry:
        kind = next(k for k in _KINDS if getattr(self, k) is not None)
        return AclEntry(
            kind, str(getattr(self, kind)), PermissionLevel.parse(self.permission_level)
        )


class AclRequest(BaseModel):
    access_control_list: list[AccessControlRequest] = Field(default_factory=list)


router = APIRouter(route_class=JsonBodyRoute)


async def _acl_answer(request: Request, name: str, checked: bool = False) -> dict[str, Any]:
    manager = services_of(request).manager
    entries = await manager.acl(identity_of(request), name, checked=checked)
    return {
        "object_id": f"/registered-models/{name}",
        "object_type": "registered-model",
        "access_control_list": [_entry_json(e) for e in entries],
    }


@router.get(f"{PERMISSIONS_PREFIX}/{{name:path}}", summary="A model's permissions")
async def get(request: Request, name: str) -> dict[str, Any]:
    return await _acl_answer(request, name)


@router.put(f"{PERMISSIONS_PREFIX}/{{name:path}}", summary="Replace a model's permissions")
async def put(request: Request, name: str, body: AclRequest) -> dict[str, Any]:
    entries = [e.entry() for e in body.access_control_list]
    await services_of(request).manager.change_acl(identity_of(request), name, entries, replace=True)
    return await _acl_answer(request, name, checked=True)


@router.patch(f"{PERMISSIONS_PREFIX}/{{name:path}}", summary="Add to a model's permissions")
async def patch(request: Request, name: str, body: AclRequest) -> dict[str, Any]:
    entries = [e.entry() for e in body.access_control_list]
    await services_of(request).manager.change_acl(
        identity_of(request), name, entries, replace=False
    )
    return await _acl_answer(request, name, checked=True)


def _entry_json(entry: AclEntry) -> dict[str, Any]:
    permission: dict[str, Any] = {
        "permission_level": entry.level.name,
        "inherited": entry.inherited,
    }
    if entry.inherited:
        permission["inherited_from_object"] = ["/registered-models/"]
    return {
        entry.kind: entry.name,
        "display_name": entry.display_name,
        "all_permissions": [permission],
    }
