"""A fault of regserve's own on the scoring path is answered in the error shape, not as a bare
plain-text 500, and the next request is served: the bare scoring handler in process, on a real
state store and router."""

from __future__ import annotations

from pathlib import Path

import orjson
from starlette.types import Message

from regserve.auth.service import AccessService
from regserve.gateway.context import IDENTITY_KEY
from regserve.gateway.scoring import ScoringHandler
from regserve.metrics import TrafficRecorder
from regserve.router import ModelRoutes, Router, ServedVersion
from regserve.settings import Settings
from regserve.states import VersionState
from regserve.store import StateStore
from regserve.worker import wire
from tests.gateway.conftest import Sent

ADMIN_TOKEN = "rsp_scoring-faults-admin-token"


class BrokenOnce:
    """A target whose first request fails the way a bug in regserve would."""

    def __init__(self) -> None:
        self.calls = 0

    async def request(self, content_type: str | None, body: bytes, timeout: float) -> wire.Response:
        self.calls += 1
        if self.calls == 1:
            raise KeyError("a bug, not the caller's input")
        return wire.Response(200, "application/json", b'{"predictions": [1]}')


async def _score(handler: ScoringHandler, access: AccessService) -> Sent:
    identity = await access.authenticate(f"Bearer {ADMIN_TOKEN}".encode())
    scope = {"type": "http", "method": "POST", "path": "/model/m/1/invocations", "headers": []}
    scope[IDENTITY_KEY] = identity

    async def receive() -> Message:
        return {"type": "http.request", "body": b'{"inputs": [[1]]}', "more_body": False}

    sent = Sent()
    await handler(scope, receive, sent, "m", "1")
    return sent


async def test_an_unexpected_error_is_a_json_500_and_the_next_request_is_served(
    store: StateStore, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    access = AccessService(settings, store, ADMIN_TOKEN)
    access.bootstrap()
    router = Router()
    target = BrokenOnce()
    served = ServedVersion("1", "None", VersionState.READY, "ready", target)
    router.publish(ModelRoutes("m", {"1": served}))
    recorder = TrafficRecorder()
    handler = ScoringHandler(settings, router, recorder, access)

    failed = await _score(handler, access)
    assert failed.status == 500
    assert failed.headers[b"content-type"] == b"application/json"
    body = orjson.loads(failed.body)
    assert set(body) == {"error_code", "message"}, body
    assert body["error_code"] == "INTERNAL_ERROR"
    assert "server's log" in body["message"]

    answered = await _score(handler, access)
    assert answered.status == 200
    assert orjson.loads(answered.body) == {"predictions": [1]}
