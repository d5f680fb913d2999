from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from regserve.registry.hosted import HostedRegistryError, create_hosted_registry
from tests.registry.conftest import HostedServer

SEARCH = "/api/2.0/mlflow/registered-models/search"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_host_headers_pass(hosted: HostedServer, host: str) -> None:
    response = httpx.get(hosted.url + SEARCH, headers={"Host": f"{host}:{hosted.port}"})
    assert response.status_code == 200, response.text


def test_foreign_host_header_is_refused(hosted: HostedServer) -> None:
    response = httpx.get(hosted.url + SEARCH, headers={"Host": "evil.example.com"})
    assert response.status_code == 403


def test_same_data_dir_returns_the_same_registry(hosted: HostedServer) -> None:
    assert create_hosted_registry(hosted.registry.data_dir) is hosted.registry


def test_second_data_dir_is_refused(hosted: HostedServer, tmp_path: Path) -> None:
    with pytest.raises(HostedRegistryError):
        create_hosted_registry(tmp_path)


def test_store_uri_is_not_exported_to_children(hosted: HostedServer) -> None:
    assert os.environ.get("MLFLOW_TRACKING_URI") != hosted.registry.backend_store_uri


def test_reader_works_on_the_store_before_any_request(hosted: HostedServer) -> None:
    assert isinstance(hosted.registry.reader.list_models(), list)


async def test_app_works_mounted_as_a_fallback(hosted: HostedServer, two_versions: str) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    gateway = Starlette(
        routes=[
            Route("/own", lambda request: PlainTextResponse("regserve")),
            Mount("/", app=hosted.registry.app),
        ]
    )
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        assert (await client.get("/own")).text == "regserve"
        response = await client.get(
            "/api/2.0/mlflow/registered-models/get", params={"name": two_versions}
        )
        assert response.status_code == 200, response.text
        assert response.json()["registered_model"]["name"] == two_versions
