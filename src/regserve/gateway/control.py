"""The control API, in the shapes of Databricks' classic serving API.

Routes only translate: they read parameters, call the controller or the store, and shape
the answer. Errors are raised as core errors and rendered by the gateway's one handler.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from regserve.auth.levels import PermissionLevel
from regserve.auth.service import enable_refusal
from regserve.errors import (
    EndpointNotFoundError,
    InvalidParameterError,
    NotFoundError,
    PermissionDeniedError,
    RegServeError,
)
from regserve.gateway.context import identity_of, services_of, shown_of
from regserve.gateway.json_route import JsonBodyRoute
from regserve.redaction import PathRedactor
from regserve.router import ModelRoutes
from regserve.store import ClusterConfig, EndpointRecord

__all__ = ["PREFIX", "router"]

PREFIX = "/api/2.0/preview/mlflow/endpoints"
_STAGE_REFS = ("Staging", "Production", "latest")
_SINCE_CREATION = (
    "From the creation of the registered model served on: what a model deleted earlier "
    "under the same name did is not shown (the audit log keeps what principals did to it)."
)

_KEPT_LOGS = (
    "The newest lines of a served version's log; for a version that served and stopped "
    "(archived or deleted in the registry, serving disabled), the last log it left, in the "
    "same shape: kept until the registered model is deleted, at most REGSERVE_KEPT_LOGS (20) "
    "per model, each cut to its newest REGSERVE_KEPT_LOG_BYTES (1 MiB). 404 "
    "RESOURCE_DOES_NOT_EXIST for a version that left no log; 400 for a model never served."
)


class ModelRequest(BaseModel):
    registered_model_name: str = Field(..., min_length=1, description="The registered model.")


class VersionRequest(ModelRequest):
    endpoint_version_name: str = Field(..., min_length=1, description="The version, e.g. '1'.")


class Tag(BaseModel):
    key: str = Field(..., min_length=1)
    value: str = ""


class DesiredClusterConfig(BaseModel):
    node_type_id: str = Field(..., min_length=1)
    tags: list[Tag] = Field(default_factory=list)


class UpdateClusterConfigRequest(ModelRequest):
    desired_cluster_config: DesiredClusterConfig


@runtime_checkable
class _Unloading(Protocol):
    """A target that can be idle (the local backend's replica sets)."""

    @property
    def idle(self) -> bool: ...
    @property
    def idle_reason(self) -> str | None: ...
    @property
    def last_request(self) -> float | None: ...


router = APIRouter(route_class=JsonBodyRoute)
_READ = PermissionLevel.CAN_READ
_MANAGE = PermissionLevel.CAN_MANAGE


async def _require(request: Request, name: str, level: PermissionLevel, action: str) -> str:
    """The caller's name, once it is known to hold ``level`` on ``name``."""
    identity = identity_of(request)
    await services_of(request).access.require(identity, name, level, action)
    return identity.name


@router.post(f"{PREFIX}/enable", summary="Enable serving for a registered model")
async def enable(request: Request, body: ModelRequest) -> dict[str, Any]:
    name = body.registered_model_name
    identity = identity_of(request)
    level = await services_of(request).access.level(identity, name)
    refusal = enable_refusal(identity, level, name)
    if refusal is not None:
        raise PermissionDeniedError(refusal)
    await services_of(request).controller.enable(name, identity.name)
    return {}


@router.post(f"{PREFIX}/disable", summary="Disable serving and terminate the cluster")
async def disable(request: Request, body: ModelRequest) -> dict[str, Any]:
    name = body.registered_model_name
    actor = await _require(request, name, _MANAGE, "disable serving")
    await services_of(request).controller.disable(name, actor)
    return {}


@router.get(f"{PREFIX}/get-status", summary="The serving endpoint's state")
async def get_status(
    request: Request, registered_model_name: str = Query(..., min_length=1)
) -> dict[str, Any]:
    await _require(request, registered_model_name, _READ, "read its serving status")
    endpoint = await _enabled_endpoint(request, registered_model_name)
    return {"endpoint_status": _endpoint_json(endpoint, shown_of(request))}


@router.get(f"{PREFIX}/list", summary="Every served model")
async def list_endpoints(request: Request) -> dict[str, Any]:
    services = services_of(request)
    endpoints = await asyncio.to_thread(services.store.list_endpoints)
    names = await services.access.readable(identity_of(request), [e.model_name for e in endpoints])
    readable = set(names)
    shown = shown_of(request)
    return {"endpoints": [_endpoint_json(e, shown) for e in endpoints if e.model_name in readable]}


@router.get(f"{PREFIX}/list-versions", summary="The served versions and their states")
async def list_versions(
    request: Request, registered_model_name: str = Query(..., min_length=1)
) -> dict[str, Any]:
    await _require(request, registered_model_name, _READ, "list its served versions")
    await _enabled_endpoint(request, registered_model_name)
    store = services_of(request).store
    versions = await asyncio.to_thread(store.list_versions, registered_model_name)
    shown = shown_of(request)
    routes = services_of(request).router.get(registered_model_name)
    return {
        "endpoint_versions": [
            {
                "registered_model_name": v.model_name,
                "endpoint_version_name": v.version,
                "state": v.state,
                "state_message": shown(v.state_message),
                "worker_pid": v.extra.get("worker_pid"),
                "environment": v.extra.get("environment"),
                **_loading(routes, v.version),
            }
            for v in versions
        ]
    }


@router.get(f"{PREFIX}/list-version-aliases", summary="Stages and aliases and their versions")
async def list_version_aliases(
    request: Request, registered_model_name: str = Query(..., min_length=1)
) -> dict[str, Any]:
    await _require(request, registered_model_name, _READ, "list its serving aliases")
    await _enabled_endpoint(request, registered_model_name)
    routes = services_of(request).router.get(registered_model_name)
    refs = [*_STAGE_REFS, *(sorted(routes.aliases) if routes else [])]
    aliases = []
    for ref in refs:
        try:
            served = routes.resolve(ref) if routes else None
        except RegServeError:
            continue
        if served is not None:
            aliases.append({"alias": ref, "endpoint_version_name": served.version})
    return {"aliases": aliases}


@router.post(f"{PREFIX}/get-version-logs", summary="A version's worker log", description=_KEPT_LOGS)
async def get_version_logs(request: Request, body: VersionRequest) -> dict[str, Any]:
    return await _version_logs(request, body.registered_model_name, body.endpoint_version_name)


@router.get(f"{PREFIX}/get-version-logs", summary="A version's worker log", description=_KEPT_LOGS)
async def get_version_logs_query(
    request: Request,
    registered_model_name: str = Query(..., min_length=1),
    endpoint_version_name: str = Query(..., min_length=1),
) -> dict[str, Any]:
    return await _version_logs(request, registered_model_name, endpoint_version_name)


@router.get(
    f"{PREFIX}/get-event-history",
    summary="Everything that happened to the endpoint",
    description=_SINCE_CREATION,
)
async def get_event_history(
    request: Request,
    registered_model_name: str = Query(..., min_length=1),
    endpoint_version_name: str | None = Query(None),
    max_events: int = Query(500, ge=1, le=10_000),
) -> dict[str, Any]:
    store = services_of(request).store
    await _require(request, registered_model_name, _READ, "read its serving events")
    endpoint = await _known_endpoint(request, registered_model_name)
    since = _since(endpoint)
    events = await asyncio.to_thread(
        store.list_events, registered_model_name, endpoint_version_name, max_events, since
    )
    shown = shown_of(request)
    return {
        "events": [
            {
                "timestamp": e.timestamp,
                "event_type": e.event_type,
                **({"endpoint_version_name": e.version} if e.version else {}),
                "message": shown(e.message),
                **({"principal": e.principal} if e.principal else {}),
            }
            for e in events
        ]
    }


@router.get(
    f"{PREFIX}/get-metric-history",
    summary="Per-minute traffic figures",
    description=_SINCE_CREATION,
)
async def get_metric_history(
    request: Request, registered_model_name: str = Query(..., min_length=1)
) -> dict[str, Any]:
    services = services_of(request)
    await _require(request, registered_model_name, _READ, "read its serving metrics")
    endpoint = await _known_endpoint(request, registered_model_name)
    if services.batches is not None:  # the batches run since the last flush, too
        await services.batches.sample(registered_model_name)
    await asyncio.to_thread(services.store.add_metrics, services.recorder.drain())
    since = _since(endpoint) // 60_000 * 60_000  # per-minute rows start on the minute
    points = await asyncio.to_thread(services.store.metric_history, registered_model_name, since)
    return {
        "metrics": [
            {
                "key": p.key,
                "value": p.value,
                "timestamp": p.timestamp,
                "endpoint_version_name": p.version,
            }
            for p in points
        ]
    }


@router.put(f"{PREFIX}/update-cluster-config", summary="Change the node type and tags")
async def update_cluster_config(
    request: Request, body: UpdateClusterConfigRequest
) -> dict[str, Any]:
    name = body.registered_model_name
    actor = await _require(request, name, _MANAGE, "change its serving cluster")
    desired = body.desired_cluster_config
    config = ClusterConfig(desired.node_type_id, tuple((t.key, t.value) for t in desired.tags))
    services = services_of(request)
    await services.controller.update_config(name, config, actor)
    if services.capture is not None:  # this gateway at once; the others within seconds
        await services.capture.reload(services.store)
    return {}


@router.get("/api/2.0/clusters/list-node-types", summary="Instance types on offer")
async def list_node_types(request: Request) -> dict[str, Any]:
    node_types = services_of(request).controller.node_types
    return {"node_types": [{"node_type_id": k, **v} for k, v in node_types.items()]}


@router.api_route(
    f"{PREFIX}/{{rest:path}}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def unknown(rest: str) -> dict[str, Any]:
    raise EndpointNotFoundError(f"No such serving API: {PREFIX}/{rest}.")


async def _known_endpoint(request: Request, name: str) -> EndpointRecord:
    endpoint = await asyncio.to_thread(services_of(request).store.get_endpoint, name)
    if endpoint is None:
        raise InvalidParameterError(f"Model '{name}' has never been served.")
    return endpoint


def _since(endpoint: EndpointRecord) -> int:
    """Events and figures from before the served registered model was created belong to
    another model of that name, deleted since: not this one's."""
    return endpoint.model_created_at or 0


async def _enabled_endpoint(request: Request, name: str) -> EndpointRecord:
    endpoint = await asyncio.to_thread(services_of(request).store.get_endpoint, name)
    if endpoint is None or not endpoint.enabled:
        raise InvalidParameterError(
            f"Serving is not enabled for model '{name}'. Enable it with POST {PREFIX}/enable."
        )
    return endpoint


async def _version_logs(request: Request, name: str, version: str) -> dict[str, Any]:
    """A served version's log, or the last log of one that stopped being served (archived,
    deleted, serving disabled: ``backends/local/kept_logs.py``), in the same shape."""
    await _require(request, name, _READ, "read its served versions' logs")
    endpoint = await _known_endpoint(request, name)
    services = services_of(request)
    versions = await asyncio.to_thread(services.store.list_versions, name)
    if endpoint.enabled and version in {v.version for v in versions}:
        logs = await asyncio.to_thread(services.backend.read_logs, name, version)
    else:
        logs = await _kept_log(request, name, version)
    return {"logs": shown_of(request)(logs)}


async def _kept_log(request: Request, name: str, version: str) -> str:
    services = services_of(request)
    kept = await asyncio.to_thread(services.backend.kept_log, name, version)
    if kept is not None and kept.modified_ms < await _created_at(request, name):
        kept = None  # a model deleted earlier under this name left it: not this one's
    if kept is None:
        raise NotFoundError(
            f"Version {version} of model '{name}' is not served and left no log "
            "(a version that served keeps its last log until the model is deleted)."
        )
    return kept.text


async def _created_at(request: Request, name: str) -> int:
    """When the registered model ``name`` was created (ms), as the registry says now (0:
    this gateway reads no registry)."""
    reader = services_of(request).reader
    if reader is None:
        return 0
    snapshot = await asyncio.to_thread(reader.snapshot, name)
    if snapshot is None:
        raise NotFoundError(f"Registered model '{name}' does not exist.")
    return snapshot.created_at


def _loading(routes: ModelRoutes | None, version: str) -> dict[str, Any]:
    """Whether a served version is loaded, why not, and when its last request came (where
    this process serves it on the local backend)."""
    served = routes.versions.get(version) if routes is not None else None
    target = served.target if served is not None else None
    if not isinstance(target, _Unloading):
        return {}
    last = target.last_request
    return {
        "loaded": not target.idle,
        "idle_reason": target.idle_reason,
        "last_request_timestamp": int(last * 1000) if last is not None else None,
    }


def _endpoint_json(endpoint: EndpointRecord, shown: PathRedactor) -> dict[str, Any]:
    status: dict[str, Any] = {
        "registered_model_name": endpoint.model_name,
        "state": endpoint.state,
        "state_message": shown(endpoint.state_message),
    }
    if endpoint.actual_config is not None:
        status["actual_cluster_config"] = endpoint.actual_config.to_json()
    if endpoint.desired_config != endpoint.actual_config:
        status["desired_cluster_config"] = endpoint.desired_config.to_json()
    return status
