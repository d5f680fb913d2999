"""Read-only views of a registered model for the Serving UI (``/api/2.0/regserve/models/``).

``get``: the model's versions with their registry stage, status and aliases and whether
``get-version-logs`` has a log of them (served, or kept since they stopped), and what the
caller may do with serving (its level, and why it may not enable serving when it may not).
``get-input-example``: a version's logged input example, shaped as a scoring request, or null
for a version logged without one (a 404 is only for a model or version that does not exist:
the UI asks for every version it shows, and a browser reports each error status in its
console). Both need CAN_READ on the model.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request

from regserve.auth.levels import PermissionLevel
from regserve.auth.service import enable_refusal
from regserve.errors import NotFoundError
from regserve.gateway.context import identity_of, services_of
from regserve.gateway.json_route import JsonBodyRoute
from regserve.registry import ModelSnapshot
from regserve.registry.deferred import DeferredReader

__all__ = ["MODELS_PREFIX", "router"]

MODELS_PREFIX = "/api/2.0/regserve/models"


def _reader(request: Request) -> DeferredReader:
    reader: DeferredReader | None = services_of(request).reader
    assert reader is not None, "the gateway was built without a registry reader"
    return reader


async def _level(request: Request, name: str, action: str) -> PermissionLevel:
    """The caller's level on ``name``, once it is known to be at least CAN_READ."""
    services = services_of(request)
    identity = identity_of(request)
    await services.access.require(identity, name, PermissionLevel.CAN_READ, action)
    level: PermissionLevel = await services.access.level(identity, name)
    return level


router = APIRouter(route_class=JsonBodyRoute)


@router.get(f"{MODELS_PREFIX}/get", summary="A model's versions and the caller's rights")
async def get_model(
    request: Request, registered_model_name: str = Query(..., min_length=1)
) -> dict[str, Any]:
    name = registered_model_name
    level = await _level(request, name, "read it")
    snapshot = await asyncio.to_thread(_reader(request).snapshot, name)
    if snapshot is None:
        raise NotFoundError(f"Registered model '{name}' does not exist.")
    times = await asyncio.to_thread(services_of(request).backend.log_times, name)
    # A log older than the registered model is a model's deleted earlier under this name.
    logged = {v for v, written in times.items() if written >= snapshot.created_at}
    return {
        "registered_model": _model_json(snapshot, logged),
        "permission_level": level.name,
        "enable_refusal": enable_refusal(identity_of(request), level, name),
    }


@router.get(
    f"{MODELS_PREFIX}/get-input-example",
    summary="A version's logged input example",
    description="The example as a scoring request body; null when the version was logged "
    "without one. 404 RESOURCE_DOES_NOT_EXIST only for a model or version that does not exist.",
)
async def get_input_example(
    request: Request,
    registered_model_name: str = Query(..., min_length=1),
    version: str = Query(..., min_length=1),
) -> dict[str, Any]:
    name = registered_model_name
    await _level(request, name, "read its input examples")
    example = await asyncio.to_thread(_reader(request).input_example, name, version)
    return {"input_example": example}


def _model_json(snapshot: ModelSnapshot, logged: set[str]) -> dict[str, Any]:
    return {
        "name": snapshot.name,
        "description": snapshot.description,
        "versions": [
            {
                "version": v.version,
                "current_stage": v.stage,
                "status": v.status,
                "aliases": list(v.aliases),
                "creation_timestamp": v.creation_timestamp,
                "has_log": v.version in logged,
            }
            for v in snapshot.versions
        ],
    }
