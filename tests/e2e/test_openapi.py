"""Real answers of a real ``regserve up`` match the schemas its ``/openapi.json`` publishes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from regserve.gateway import schemas as s
from regserve.gateway.openapi import ANSWERS
from tests.support.models import iris_frame
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, API, RegServeProcess

pytestmark = pytest.mark.e2e

MODEL = "described"
SCIM = "/api/2.0/preview/scim/v2"
PERMS = f"/api/2.0/permissions/registered-models/{MODEL}"
Q = {"registered_model_name": MODEL}
TRAFFIC = "/api/2.0/regserve/endpoints/traffic"
SHADOW = {"ref": "latest", "percent": 5}
V = {**Q, "endpoint_version_name": "1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    server = RegServeProcess(tmp_path_factory.mktemp("openapi") / "data").start()
    try:
        with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
            reg.client.create_registered_model(MODEL)
            assert server.enable(MODEL).status_code == 200
            reg.register(MODEL)
            server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        yield server
    finally:
        server.close()


def _calls() -> list[tuple[str, str, dict[str, Any]]]:
    acl = [{"user_name": "described-user", "permission_level": "CAN_READ"}]
    return [
        ("get", "/health", {}),
        ("get", f"{API}/get-status", {"params": Q}),
        ("get", f"{API}/list", {}),
        ("get", f"{API}/list-versions", {"params": Q}),
        ("get", f"{API}/list-version-aliases", {"params": Q}),
        ("post", f"{API}/get-version-logs", {"json": V}),
        ("get", f"{API}/get-version-logs", {"params": V}),
        ("get", f"{API}/get-event-history", {"params": Q}),
        ("get", f"{API}/get-metric-history", {"params": Q}),
        ("get", "/api/2.0/clusters/list-node-types", {}),
        ("get", TRAFFIC, {"params": Q}),  # the default
        (
            "put",
            TRAFFIC,
            {"json": {**Q, "routes": [{"ref": "1", "percent": 100}], "shadow": SHADOW}},
        ),
        ("get", TRAFFIC, {"params": Q}),  # the config and where traffic goes
        ("post", "/api/2.0/token/create", {"json": {"comment": "c", "lifetime_seconds": 60}}),
        ("get", "/api/2.0/token/list", {}),
        ("get", "/api/2.0/token-management/tokens", {}),
        ("post", f"{SCIM}/ServicePrincipals", {"json": {"displayName": "described-sp"}}),
        ("get", f"{SCIM}/ServicePrincipals", {}),
        ("post", f"{SCIM}/Users", {"json": {"userName": "described-user"}}),
        ("get", f"{SCIM}/Users", {}),
        ("get", f"{SCIM}/Me", {}),
        ("get", "/api/2.0/regserve/audit-events", {}),
        ("put", PERMS, {"json": {"access_control_list": acl}}),
        ("patch", PERMS, {"json": {"access_control_list": acl}}),
        ("get", PERMS, {}),
    ]


def _model_for(method: str, url: str) -> type[BaseModel]:
    path = url.replace(PERMS, "/api/2.0/permissions/registered-models/{name}")
    model = ANSWERS[(method, path)]
    assert model is not None
    return model


@pytest.mark.parametrize(("method", "url", "kwargs"), _calls(), ids=lambda v: str(v)[:60])
def test_answers_match_their_schema(
    server: RegServeProcess, method: str, url: str, kwargs: dict[str, Any]
) -> None:
    r = server.client.request(method.upper(), url, **kwargs)
    assert r.status_code == 200, r.text
    _model_for(method, url).model_validate(r.json())  # extra fields are refused


def test_the_served_spec_describes_scoring_and_errors(server: RegServeProcess) -> None:
    spec = server.client.get("/openapi.json").json()
    assert "/model/{name}/{ref}/invocations" in spec["paths"]
    rows = {"dataframe_records": iris_frame()[0].head(2).to_dict(orient="records")}
    s.PredictionsAnswer.model_validate(server.score(MODEL, "1", rows).json())
    for bad in (server.score(MODEL, "9", rows), server.api("GET", "get-status")):
        assert bad.status_code in (400, 404)
        s.ErrorAnswer.model_validate(bad.json())
