"""Reading a model's inference table over HTTP:
``GET /api/2.0/regserve/inference-tables/read`` (CAN_MANAGE: the rows hold callers' data).

The HTTP face of ``regserve/inference/``: the route checks and parses, the reader reads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from fastapi import APIRouter, Query, Request

from regserve.auth.levels import PermissionLevel
from regserve.errors import InvalidParameterError, NotFoundError
from regserve.gateway.context import identity_of, services_of

__all__ = ["INFERENCE_READ_PATH", "MAX_ROWS", "router"]

INFERENCE_READ_PATH = "/api/2.0/regserve/inference-tables/read"
MAX_ROWS = 10000
_LAST_MS = 253402300799999
"""The last millisecond of the year 9999 (Python's dates end there)."""

_HELP = (
    "The newest captured scoring requests of a model (newest first): request id, time, "
    "version that answered, ref called, caller, status, latency, request and response bodies "
    "(cut at REGSERVE_INFERENCE_TABLE_MAX_BODY_BYTES; *_truncated says so), shadow copies "
    "marked. Capture is on per model with the cluster tag regserve.inference_table=on. "
    "`since`: epoch milliseconds or an ISO 8601 date or time (UTC unless it says otherwise). "
    "Rows come from the PostgreSQL store when that is the store (those every gateway on it "
    "captured), else from this gateway's data dir. CAN_MANAGE."
)

router = APIRouter()


@router.get(INFERENCE_READ_PATH, summary="Read a model's inference table", description=_HELP)
async def read_inference_table(
    request: Request,
    registered_model_name: str = Query(..., min_length=1),
    since: str | None = Query(None, description="Epoch ms or ISO 8601; default: any time."),
    limit: int = Query(100, ge=1, le=MAX_ROWS, description=f"Rows at most (1 to {MAX_ROWS})."),
) -> dict[str, Any]:
    name = registered_model_name
    services = services_of(request)
    await services.access.require(
        identity_of(request), name, PermissionLevel.CAN_MANAGE, "read its inference table"
    )
    since_ms = parse_since(since) if since is not None else None
    await _check_exists(request, name)
    tables = services.tables
    rows = await asyncio.to_thread(tables.read, name, since_ms, limit) if tables else []
    capture = services.capture
    return {
        "registered_model_name": name,
        "sample_rate": capture.rate(name) if capture is not None else 0.0,
        "rows": rows,
    }


def parse_since(text: str) -> int:
    """``since`` as epoch milliseconds: a whole number, or an ISO 8601 date or date and time
    (UTC when it names no offset)."""
    value = text.strip()
    if value.isascii() and value.isdigit() and len(value) <= 15:
        since = int(value)
    else:
        try:
            stamp = dt.datetime.fromisoformat(value)
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.timezone.utc)
            since = int(stamp.timestamp() * 1000)
        except (ValueError, OverflowError):
            since = -1
    if not 0 <= since <= _LAST_MS:
        raise InvalidParameterError(
            f"since must be epoch milliseconds or an ISO 8601 date or time from 1970 on, e.g. "
            f"2026-12-03 or 2026-12-03T18:00:00Z; got '{text[:64]}'."
        )
    return since


async def _check_exists(request: Request, name: str) -> None:
    services = services_of(request)
    reader = services.reader
    if reader is not None:
        found = await asyncio.to_thread(reader.snapshot, name) is not None
    else:  # a gateway that reads no registry: the store decides
        found = await asyncio.to_thread(services.store.get_endpoint, name) is not None
    if not found:
        raise NotFoundError(f"Registered model '{name}' does not exist.")
