"""MLflow registry webhooks: checking a delivery's signature, and registering regserve's hook.

MLflow (3.3 and later) signs each delivery with the webhook's secret, in the Standard Webhooks
way: ``X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{body}")>``
with ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp`` (Unix seconds) beside it. A delivery is
accepted when the signature matches (compared in constant time), the timestamp is within the
tolerance of now, and its delivery id was not accepted before (replays do nothing).

Webhooks report new models and versions, aliases and tags, not stage moves or deletions: the
controller's polling stays for those; a delivery only makes the next pass happen now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from regserve.errors import RegServeError, UnauthenticatedError

__all__ = [
    "EVENTS",
    "WEBHOOK_NAME",
    "WebhookVerifier",
    "ensure_secret",
    "register_webhook",
]

WEBHOOK_NAME = "regserve-sync"
EVENTS = (
    "registered_model.created",
    "model_version.created",
    "model_version_alias.created",
    "model_version_alias.deleted",
)
"""What regserve subscribes to: every registry event that can change what is served."""
_SECRET_FILE = "webhook-secret"
_UNIX_TIME = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_SEEN_MAX = 10_000


def ensure_secret(configured: str | None, data_dir: Path) -> str:
    """``REGSERVE_WEBHOOK_SECRET``, or one made once and kept 0600 in the data dir."""
    if configured:
        return configured
    path = data_dir / _SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


class WebhookVerifier:
    """Checks deliveries against one secret; remembers accepted delivery ids for a while."""

    def __init__(self, secret: str, tolerance_seconds: float) -> None:
        self._key = secret.encode("utf-8")
        self._tolerance = tolerance_seconds
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(
        self, delivery_id: str | None, timestamp: str | None, signature: str | None, body: bytes
    ) -> bool:
        """Raise :class:`UnauthenticatedError` for a bad delivery; False for a replay."""
        if not (delivery_id and timestamp and signature):
            raise UnauthenticatedError(
                "A registry webhook delivery needs the X-MLflow-Signature, X-MLflow-Delivery-Id "
                "and X-MLflow-Timestamp headers."
            )
        expected = sign(self._key, delivery_id, timestamp, body)
        offered = [part.strip() for part in signature.split(" ")]  # several, space-separated
        if not any(hmac.compare_digest(expected, part) for part in offered):
            raise UnauthenticatedError("The webhook signature does not match regserve's secret.")
        sent = _unix_time(timestamp)
        now = time.time()
        if abs(now - sent) > self._tolerance:
            raise UnauthenticatedError(
                f"The webhook timestamp is {now - sent:.0f} s away from now (tolerance "
                f"{self._tolerance:g} s): refused as a possible replay."
            )
        return self._first_time(delivery_id, now)

    def _first_time(self, delivery_id: str, now: float) -> bool:
        while self._seen and (
            len(self._seen) >= _SEEN_MAX or next(iter(self._seen.values())) < now - self._tolerance
        ):
            self._seen.popitem(last=False)
        if delivery_id in self._seen:
            return False
        self._seen[delivery_id] = now
        return True


def _unix_time(timestamp: str) -> float:
    """Seconds since the epoch, as MLflow writes them (digits, perhaps a fraction); anything
    else (``nan``, ``inf``, ``1e400``, a sign) is refused: such a value compares as fresh."""
    if not _UNIX_TIME.fullmatch(timestamp):
        raise UnauthenticatedError(
            "X-MLflow-Timestamp is not a Unix time in seconds (digits, as MLflow sends it)."
        )
    return float(timestamp)


def sign(key: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``v1,<base64>`` signature MLflow sends for this delivery."""
    content = b".".join((delivery_id.encode("utf-8"), timestamp.encode("utf-8"), body))
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def register_webhook(registry_uri: str, url: str, secret: str) -> str:
    """Create or update regserve's webhook in the registry at ``registry_uri``; its id.

    Idempotent: one webhook named ``regserve-sync`` is kept, pointed at ``url`` with ``secret``
    and every event in :data:`EVENTS`, and active.
    """
    from mlflow import MlflowClient
    from mlflow.entities.webhook import WebhookEvent, WebhookStatus
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    events: list[Any] = [WebhookEvent.from_str(e) for e in EVENTS]  # type: ignore[arg-type]
    try:
        existing = [w for w in _all_webhooks(client) if w.name == WEBHOOK_NAME]
        for extra in existing[1:]:
            client.delete_webhook(extra.webhook_id)
        if existing:
            hook = client.update_webhook(
                existing[0].webhook_id,
                url=url,
                events=events,
                secret=secret,
                status=WebhookStatus.ACTIVE,
            )
        else:
            hook = client.create_webhook(
                WEBHOOK_NAME, url, events, description="regserve: sync at once", secret=secret
            )
    except MlflowException as exc:
        raise RegServeError(f"Could not register the registry webhook: {exc.message}") from exc
    return str(hook.webhook_id)


def _all_webhooks(client: Any) -> list[Any]:
    hooks: list[Any] = []
    token: str | None = None
    while True:
        page = client.list_webhooks(max_results=100, page_token=token)
        hooks.extend(page)
        token = page.token
        if not token:
            return hooks
