"""``/health`` (liveness and start-up, open) and ``/metrics`` (Prometheus, with the workers' own
figures)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from regserve.gateway.context import Services, maybe_services, services_of
from regserve.gateway.worker_stats import WorkerStats

__all__ = ["STARTING_RETRY_AFTER", "install_worker_stats", "router"]

router = APIRouter()

STARTING_RETRY_AFTER = 2
"""Seconds a starting regserve's ``/health`` tells its callers to wait before asking again."""


def install_worker_stats(api: FastAPI, services: Services | None) -> None:
    """Keep the app's :class:`WorkerStats` (one collector per registry) for ``/metrics``."""
    if services is not None:
        api.state.worker_stats = WorkerStats(services.router, services.recorder.registry)


@router.get("/health", summary="Liveness and start-up (no authentication)")
async def health(request: Request) -> Any:
    """200 ``{"status": "ok"}`` once everything has started; before (the first seconds of
    ``regserve up``), 503 with ``Retry-After`` and ``{"status": "starting", "starting":
    ["registry", "controller"]}``: the registry, then the leader's first pass (adopting the
    workers a previous process left); a follower's ``routes`` while the routing table names
    versions it cannot reach yet (on Ray, until connected to the cluster). Scoring already
    answers; MLflow's routes do not until the registry has started; whoever waits for "ready"
    (a load balancer, a script) waits."""
    services = maybe_services(request)
    if services is None:
        return {"status": "ok"}
    starting = services.starting()
    answer: dict[str, Any] = {
        "status": "starting" if starting else "ok",
        "boot_id": services.boot_id,
        "started_at": services.started_at,
    }
    node = services.node
    if node is not None:
        answer.update(role=node.role, gateway=node.gateway_id, leader=node.leader)
    if not starting:
        return answer
    answer["starting"] = starting
    headers = {"Retry-After": str(STARTING_RETRY_AFTER)}
    return JSONResponse(answer, status_code=503, headers=headers)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    registry = services_of(request).recorder.registry
    stats = request.app.state.worker_stats
    assert isinstance(stats, WorkerStats)
    await stats.refresh()
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
