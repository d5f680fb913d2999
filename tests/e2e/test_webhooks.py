"""MLflow registry webhooks: a new version is served long before the next poll; forgeries fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from mlflow import MlflowClient

from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess

pytestmark = pytest.mark.e2e

MODEL = "hooked"
PATH = "/api/2.0/regserve/registry-webhook"
POLL = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    # The controller polls once a minute: only the webhook can make a new version show up fast.
    server = RegServeProcess(
        tmp_path_factory.mktemp("webhooks") / "data", poll_interval=str(POLL)
    ).start()
    try:
        yield server
    finally:
        server.close()


def _delivery(secret: str, body: bytes, *, timestamp: float | None = None) -> dict[str, str]:
    delivery_id, ts = str(uuid.uuid4()), str(int(timestamp or time.time()))
    signed = f"{delivery_id}.{ts}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
    }


def _secret(server: RegServeProcess) -> str:
    path = server.data_dir / "webhook-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path.read_text().strip()


def test_a_registered_version_is_served_before_the_next_poll(server: RegServeProcess) -> None:
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
        MlflowClient().create_registered_model(MODEL)
        assert server.enable(MODEL).status_code == 200  # its immediate pass sees no version
        time.sleep(1.0)
        started = time.monotonic()
        version = reg.register(MODEL)
        server.wait_version_state(MODEL, version, "VERSION_STATE_READY", timeout=POLL / 2)
        assert time.monotonic() - started < POLL / 2
        # The alias arrives by webhook too, and moves the alias URL without a poll.
        reg.alias(MODEL, "champion", version)
    rows = {"dataframe_split": {"columns": ["a"], "data": [[1]]}}

    def alias_routed() -> bool:
        return server.score(MODEL, "champion", rows).status_code != 404

    deadline = time.monotonic() + POLL / 4
    while not alias_routed():
        assert time.monotonic() < deadline, "the alias did not arrive by webhook"
        time.sleep(0.2)
    metrics = server.client.get("/metrics").text
    assert 'regserve_registry_webhooks_total{result="accepted"}' in metrics


def test_a_signed_delivery_is_accepted_once(server: RegServeProcess) -> None:
    body = json.dumps({"entity": "model_version", "action": "created", "data": {}}).encode()
    headers = _delivery(_secret(server), body)
    # No token: the signature is the credential.
    first = httpx.post(f"{server.url}{PATH}", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": True, "event": "model_version.created"}
    again = httpx.post(f"{server.url}{PATH}", content=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["accepted"] is False  # a replay triggers nothing


@pytest.mark.parametrize("forgery", ["wrong_secret", "tampered", "stale", "unsigned"])
def test_a_badly_signed_delivery_is_refused(server: RegServeProcess, forgery: str) -> None:
    body = json.dumps({"entity": "model_version", "action": "created", "data": {}}).encode()
    secret = "not-the-secret" if forgery == "wrong_secret" else _secret(server)
    headers = _delivery(secret, body, timestamp=time.time() - 3600 if forgery == "stale" else None)
    if forgery == "tampered":
        body = body.replace(b"created", b"deleted")
    if forgery == "unsigned":
        del headers["X-MLflow-Signature"]
    r = httpx.post(f"{server.url}{PATH}", content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["error_code"] == "UNAUTHENTICATED"


def test_the_hosted_registry_holds_one_webhook_after_a_restart(
    server: RegServeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.stop()
    server.start()  # registering again keeps one webhook, and its secret is still readable
    with user_registry(monkeypatch, server.url, ADMIN_TOKEN):
        hooks = list(MlflowClient().list_webhooks())
        assert [h.name for h in hooks] == ["regserve-sync"]
        assert hooks[0].url == f"{server.url}{PATH}"
        assert {str(e) for e in hooks[0].events} >= {"model_version.created"}
        # MLflow signs a test delivery with the stored secret; regserve must accept it.
        test = MlflowClient().test_webhook(hooks[0].webhook_id)
    assert test.success, test
    assert test.response_status == 200
