"""Tokens in Databricks' shapes: ``/api/2.0/token/*`` for one's own, and
``/api/2.0/token-management/*`` for admins (tokens on behalf of service principals)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from regserve.gateway.context import identity_of, services_of
from regserve.gateway.json_route import JsonBodyRoute
from regserve.store import PrincipalRecord, TokenRecord

__all__ = ["router", "token_info"]


class CreateTokenRequest(BaseModel):
    lifetime_seconds: int | None = Field(
        None, description="Seconds until the token expires; omitted or <= 0: the longest allowed."
    )
    comment: str = Field("", max_length=1000, description="What the token is for.")


class OnBehalfOfRequest(CreateTokenRequest):
    application_id: str = Field(
        ..., min_length=1, description="The service principal's application id (or name)."
    )


class DeleteTokenRequest(BaseModel):
    token_id: str = Field(..., min_length=1)


def token_info(token: TokenRecord, owner: PrincipalRecord | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "token_id": token.token_id,
        "creation_time": token.creation_time,
        "expiry_time": token.expiry_time,
        "comment": token.comment,
    }
    if owner is not None:
        info.update(
            owner_id=str(owner.id), owner_name=owner.name, created_by_username=token.created_by
        )
    return info


router = APIRouter(route_class=JsonBodyRoute)


@router.post("/api/2.0/token/create", summary="Create a token for the caller")
async def create(request: Request, body: CreateTokenRequest) -> dict[str, Any]:
    manager = services_of(request).manager
    value, token = await manager.create_token(
        identity_of(request), body.lifetime_seconds, body.comment
    )
    return {"token_value": value, "token_info": token_info(token)}


@router.get("/api/2.0/token/list", summary="The caller's tokens")
async def list_tokens(request: Request) -> dict[str, Any]:
    tokens = await services_of(request).manager.list_tokens(identity_of(request))
    return {"token_infos": [token_info(t) for t, _ in tokens]}


@router.post("/api/2.0/token/delete", summary="Revoke one of the caller's tokens")
async def delete(request: Request, body: DeleteTokenRequest) -> dict[str, Any]:
    await services_of(request).manager.revoke_token(identity_of(request), body.token_id)
    return {}


@router.post(
    "/api/2.0/token-management/on-behalf-of/tokens",
    summary="Create a token for a service principal (admins)",
)
async def create_obo(request: Request, body: OnBehalfOfRequest) -> dict[str, Any]:
    manager = services_of(request).manager
    identity = identity_of(request)
    services_of(request).access.require_admin(identity, "create tokens for others")
    owner = await manager.principal(body.application_id)
    value, token = await manager.create_token(identity, body.lifetime_seconds, body.comment, owner)
    return {"token_value": value, "token_info": token_info(token, owner)}


@router.get("/api/2.0/token-management/tokens", summary="Every live token (admins)")
async def list_all(request: Request) -> dict[str, Any]:
    manager = services_of(request).manager
    tokens = await manager.list_tokens(identity_of(request), everyone=True)
    return {"token_infos": [token_info(t, owner) for t, owner in tokens]}


@router.delete("/api/2.0/token-management/tokens/{token_id}", summary="Revoke any token")
async def delete_any(request: Request, token_id: str) -> dict[str, Any]:
    manager = services_of(request).manager
    await manager.revoke_token(identity_of(request), token_id, anyone=True)
    return {}
