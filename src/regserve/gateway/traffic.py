"""The traffic config of a model's split URL (``/model/{name}/invocations``), over HTTP:
``GET`` (CAN_READ) and ``PUT`` (CAN_MANAGE) ``/api/2.0/regserve/endpoints/traffic``.

The HTTP face of ``regserve/traffic.py``: the routes read and shape; the controller checks,
stores and applies the config (and records the event).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from regserve.auth.levels import PermissionLevel
from regserve.errors import NotFoundError, RegServeError
from regserve.gateway.context import identity_of, services_of
from regserve.gateway.json_route import JsonBodyRoute
from regserve.router import DEFAULT_ROUTES, ModelRoutes
from regserve.traffic import MAX_ROUTES, TrafficRoute, TrafficSplit

__all__ = ["TRAFFIC_PATH", "router"]

TRAFFIC_PATH = "/api/2.0/regserve/endpoints/traffic"

_PUT_HELP = (
    "Set how POST /model/{name}/invocations (no ref) splits its requests: `routes`, refs "
    "(versions, stages, aliases) whose whole-number percents add up to 100 (at most "
    f"{MAX_ROUTES}, each ref once), and optionally a `shadow` ref that gets a copy of "
    "`percent` % of the requests, answered off the caller's path and never returned. An empty "
    "`routes` goes back to the default: the Production version, else the latest READY version. "
    "A ref that is not READY takes no traffic: its share goes to the others (an event says "
    "so). Serving must be enabled. CAN_MANAGE."
)


class RouteBody(BaseModel):
    ref: str = Field(..., description="A version number, Staging, Production, latest or alias.")
    percent: int = Field(..., description="A whole number from 0 to 100.")


class TrafficRequest(BaseModel):
    registered_model_name: str = Field(..., min_length=1, description="The registered model.")
    routes: list[RouteBody] = Field(..., description="Percents adding up to 100; [] = default.")
    shadow: RouteBody | None = Field(None, description="Mirrored ref and its percent.")


router = APIRouter(route_class=JsonBodyRoute)


@router.get(TRAFFIC_PATH, summary="A model's traffic config and where traffic goes now")
async def get_traffic(
    request: Request, registered_model_name: str = Query(..., min_length=1)
) -> dict[str, Any]:
    name = registered_model_name
    services = services_of(request)
    await services.access.require(
        identity_of(request), name, PermissionLevel.CAN_READ, "read its traffic config"
    )
    await _check_exists(request, name)
    endpoint = await asyncio.to_thread(services.store.get_endpoint, name)
    split = endpoint.traffic if endpoint is not None else None
    routes = services.router.get(name)
    return {
        "registered_model_name": name,
        "routes": [r.to_json() for r in split.routes] if split else [],
        "shadow": split.shadow.to_json() if split and split.shadow else None,
        "is_default": split is None,
        "effective_routes": _effective(routes) if routes is not None else [],
    }


@router.put(TRAFFIC_PATH, summary="Set a model's traffic config", description=_PUT_HELP)
async def put_traffic(request: Request, body: TrafficRequest) -> dict[str, Any]:
    name = body.registered_model_name
    services = services_of(request)
    identity = identity_of(request)
    await services.access.require(
        identity, name, PermissionLevel.CAN_MANAGE, "change its traffic config"
    )
    await _check_exists(request, name)
    shadow = TrafficRoute(body.shadow.ref, body.shadow.percent) if body.shadow else None
    split = TrafficSplit(tuple(TrafficRoute(r.ref, r.percent) for r in body.routes), shadow)
    await services.controller.update_traffic(name, split, identity.name)
    return {}


async def _check_exists(request: Request, name: str) -> None:
    reader = services_of(request).reader
    if reader is None:  # a gateway that reads no registry: the store decides
        return
    if await asyncio.to_thread(reader.snapshot, name) is None:
        raise NotFoundError(f"Registered model '{name}' does not exist.")


def _effective(routes: ModelRoutes) -> list[dict[str, Any]]:
    """Each route that takes traffic now, with its share (after the unready refs' shares
    went to the others) and the version it answers from."""
    split = routes.traffic
    if split is None or not split.routes:
        for route in DEFAULT_ROUTES:
            try:
                served = routes.resolve(route.ref)
            except RegServeError:  # not READY: the next default takes it
                continue
            return [_share(route.ref, 100.0, served.version)]
        return []
    unready = routes.unready_refs()
    live = [r for r in split.routes if r.percent > 0 and r.ref not in unready]
    total = sum(r.percent for r in live)
    return [_share(r.ref, 100.0 * r.percent / total, routes.resolve(r.ref).version) for r in live]


def _share(ref: str, percent: float, version: str) -> dict[str, Any]:
    return {"ref": ref, "percent": round(percent, 2), "endpoint_version_name": version}
