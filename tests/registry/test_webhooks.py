"""Webhook deliveries signed by MLflow's own signer are accepted; anything else is refused."""

from __future__ import annotations

import json
import time

import pytest

from regserve.errors import UnauthenticatedError
from regserve.registry.webhooks import WebhookVerifier, sign

SECRET = "s3cret"
BODY = json.dumps({"entity": "model_version", "action": "created", "data": {"name": "m"}})


def _mlflow_signature(delivery_id: str, timestamp: str, body: str = BODY) -> str:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    return str(_generate_hmac_signature(SECRET, delivery_id, timestamp, body))


def test_mlflows_signature_is_accepted_once() -> None:
    verifier = WebhookVerifier(SECRET, 300)
    ts = str(int(time.time()))
    signature = _mlflow_signature("d-1", ts)
    assert verifier.verify("d-1", ts, signature, BODY.encode()) is True
    assert verifier.verify("d-1", ts, signature, BODY.encode()) is False  # a replay
    # Several signatures (secret rotation, Standard Webhooks style): one matching is enough.
    both = f"v1,AAAA {_mlflow_signature('d-2', ts)}"
    assert verifier.verify("d-2", ts, both, BODY.encode()) is True


@pytest.mark.parametrize(
    ("delivery_id", "age", "body", "secret", "why"),
    [
        ("d", 0, BODY + " ", SECRET, "does not match"),
        ("d", 0, BODY, "other", "does not match"),
        ("d", 301, BODY, SECRET, "away from now"),
        ("d", -301, BODY, SECRET, "away from now"),
        ("", 0, BODY, SECRET, "needs the"),
    ],
)
def test_bad_deliveries_are_refused(
    delivery_id: str, age: int, body: str, secret: str, why: str
) -> None:
    ts = str(int(time.time()) - age)
    signed = sign(secret.encode(), delivery_id, ts, BODY.encode())
    with pytest.raises(UnauthenticatedError, match=why):
        WebhookVerifier(SECRET, 300).verify(delivery_id, ts, signed, body.encode())


@pytest.mark.parametrize("timestamp", ["nan", "inf", "-inf", "1e400", "-5", "+1", "1_0", "١٢"])
def test_a_signed_timestamp_that_is_no_unix_time_is_refused(timestamp: str) -> None:
    # float() reads all but the last; nan and inf then compare as fresh for ever.
    signed = sign(SECRET.encode(), "d", timestamp, BODY.encode())
    with pytest.raises(UnauthenticatedError, match="not a Unix time"):
        WebhookVerifier(SECRET, 300).verify("d", timestamp, signed, BODY.encode())


def test_a_fractional_unix_time_is_accepted() -> None:
    ts = f"{time.time():.3f}"
    signed = sign(SECRET.encode(), "d", ts, BODY.encode())
    assert WebhookVerifier(SECRET, 300).verify("d", ts, signed, BODY.encode()) is True
