"""``GET /api/2.0/regserve/version-files`` through a real gateway, answer by answer.

The route Ray replicas fetch their version's files from (``gateway/version_files.py``). It does
not depend on the backend: here a version served by the local backend, whose copy is in the
data dir. The credential is made as regserve makes it for a replica (``FileGrants`` under the
admin token). The Ray cluster test (``test_ray_cluster.py``) uses it from real replicas.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regserve.auth.file_grants import FileGrants
from regserve.worker.fetch import FILES_PATH, files_fingerprint
from tests.support.registry import one_version_served
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "files-iris"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    yield from one_version_served(tmp_path_factory.mktemp("files") / "data", MODEL)


def _credential(server: RegServeProcess, version: str, folder: str | None = None) -> str:
    if folder is None:
        copy = server.model_dir(MODEL, version)
        folder = copy.relative_to(server.data_dir / "models").as_posix()
    return FileGrants(ADMIN_TOKEN).issue(MODEL, version, folder)


def _get(server: RegServeProcess, auth: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": auth} if auth is not None else {}
    return httpx.get(f"{server.url}{FILES_PATH}", params=params, headers=headers, timeout=30)


def _refusal(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error_code"]


def test_the_version_s_credential_gets_regserve_s_copy_as_a_tar(
    served: RegServeProcess, tmp_path: Path
) -> None:
    answer = _get(served, f"Bearer {_credential(served, '1')}", name=MODEL, version="1")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as archive:
        archive.extractall(tmp_path, filter="data")
    copy = served.model_dir(MODEL, "1")
    assert files_fingerprint(tmp_path) == files_fingerprint(copy)
    assert (tmp_path / "MLmodel").read_bytes() == (copy / "MLmodel").read_bytes()


def test_tokens_and_forgeries_are_401(served: RegServeProcess) -> None:
    credential = _credential(served, "1")
    for auth in (
        None,
        f"Bearer {ADMIN_TOKEN}",  # the admin's token reads no files here
        f"Bearer {credential[:-2]}",
        f"Bearer {FileGrants('another admin token').issue(MODEL, '1', 'x')}",
        "Basic bm90OmEtdG9rZW4=",
    ):
        assert _refusal(_get(served, auth, name=MODEL, version="1")) == (401, "UNAUTHENTICATED")


def test_another_version_or_model_is_403(served: RegServeProcess) -> None:
    auth = f"Bearer {_credential(served, '1')}"
    for name, version in ((MODEL, "2"), ("another-model", "1")):
        answer = _get(served, auth, name=name, version=version)
        assert _refusal(answer) == (403, "PERMISSION_DENIED")
        assert f"version 1 of '{MODEL}' only" in answer.json()["message"]
    assert _refusal(_get(served, auth, name=MODEL)) == (400, "INVALID_PARAMETER_VALUE")


def test_files_this_gateway_does_not_hold_are_503(served: RegServeProcess) -> None:
    auth = f"Bearer {_credential(served, '1', folder='elsewhere/1-000000000000')}"
    answer = _get(served, auth, name=MODEL, version="1")
    assert _refusal(answer) == (503, "TEMPORARILY_UNAVAILABLE")
    assert "does not hold the files" in answer.json()["message"]
    assert answer.headers["retry-after"] == "2"


def test_a_version_no_longer_served_is_403(served: RegServeProcess) -> None:
    auth = f"Bearer {_credential(served, '1')}"
    assert served.disable(MODEL).status_code == 200
    wait_for(
        lambda: _get(served, auth, name=MODEL, version="1").status_code != 200,
        30,
        "the disabled version to leave the routing table",
    )
    answer = _get(served, auth, name=MODEL, version="1")
    assert _refusal(answer) == (403, "PERMISSION_DENIED")
    assert "is not served" in answer.json()["message"]
