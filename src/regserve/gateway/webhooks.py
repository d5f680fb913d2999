"""``POST /api/2.0/regserve/registry-webhook``: MLflow registry webhooks trigger a sync now.

The route is open (no token): a delivery proves itself with its HMAC signature instead
(``registry/webhooks.py``). A good delivery wakes the controller; what it says is only logged,
since the sync pass reads the registry itself.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field

from regserve.errors import (
    BadRequestError,
    EndpointNotFoundError,
    PayloadTooLargeError,
    RegServeError,
)
from regserve.gateway.context import services_of
from regserve.worker.text import log_safe

__all__ = ["WEBHOOK_PATH", "WebhookAnswer", "router"]

WEBHOOK_PATH = "/api/2.0/regserve/registry-webhook"
_MAX_BODY = 1024 * 1024
_log = logging.getLogger("regserve.webhooks")


class WebhookAnswer(BaseModel):
    accepted: bool = Field(..., description="False for a delivery id seen before (a replay).")
    event: str = Field(
        ..., description="The delivery's `entity.action`, e.g. model_version.created."
    )


router = APIRouter()


@router.post(
    WEBHOOK_PATH,
    summary="Receive an MLflow registry webhook (signed; no token)",
    response_model=WebhookAnswer,
    openapi_extra={"security": []},
)
async def registry_webhook(
    request: Request,
    x_mlflow_signature: str | None = Header(None, description="v1,<base64 HMAC-SHA256>"),
    x_mlflow_delivery_id: str | None = Header(None),
    x_mlflow_timestamp: str | None = Header(None, description="Unix seconds"),
) -> WebhookAnswer:
    services = services_of(request)
    metrics = services.control_metrics
    try:
        body = await _body(request)
        if services.webhooks is None:
            raise EndpointNotFoundError("This regserve does not accept registry webhooks.")
        fresh = services.webhooks.verify(
            x_mlflow_delivery_id, x_mlflow_timestamp, x_mlflow_signature, body
        )
        event = _event_name(body)
    except RegServeError as error:
        if metrics is not None:
            metrics.webhooks.labels(error.error_code.lower()).inc()
        raise
    if metrics is not None:
        metrics.webhooks.labels("accepted" if fresh else "replayed").inc()
    if fresh:
        _log.info(
            "registry webhook %s (%s): syncing now",
            log_safe(event),
            log_safe(x_mlflow_delivery_id),
        )
        services.controller.trigger()
    return WebhookAnswer(accepted=fresh, event=event)


async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isascii() and length.isdigit() and int(length) > _MAX_BODY:
        raise PayloadTooLargeError(f"A webhook delivery may be at most {_MAX_BODY} bytes.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise PayloadTooLargeError(f"A webhook delivery may be at most {_MAX_BODY} bytes.")
    return body


def _event_name(body: bytes) -> str:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequestError("The webhook body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise BadRequestError("The webhook body is not a JSON object.")
    return f"{payload.get('entity', '?')}.{payload.get('action', '?')}"
