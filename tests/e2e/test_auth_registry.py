"""Permissions through a real MLflow client, the CLI, the admin token file and rate limits."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.exceptions import MlflowException

from regserve.auth import ensure_admin_token
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess

pytestmark = pytest.mark.e2e

MODEL = "stage-model"
PERMS = "/api/2.0/permissions/registered-models"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    s = RegServeProcess(tmp_path_factory.mktemp("authreg") / "data", rate_limit_rps="20")
    s.start()
    yield s
    s.close()


def _cli(
    server: RegServeProcess, *args: str, token: str = ADMIN_TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGSERVE_HOST": server.url, "REGSERVE_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "regserve.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_edit_registers_but_only_production_rights_promote(
    server: RegServeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ok(_cli(server, "principal", "create", "ds", "--user"))
    token = json.loads(_ok(_cli(server, "token", "create", "--for", "ds", "-o", "json")))
    ds_token = token["token_value"]
    r = server.client.post("/api/2.0/mlflow/registered-models/create", json={"name": MODEL})
    assert r.status_code == 200, r.text
    _ok(_cli(server, "permissions", "grant", MODEL, "CAN_EDIT", "--user", "ds"))

    with user_registry(monkeypatch, server.url, ds_token) as reg:
        version = reg.register(MODEL)  # runs, artifacts, a new version: all with CAN_EDIT
        assert version == "1"
        with pytest.raises(MlflowException, match="CAN_MANAGE_PRODUCTION_VERSIONS") as caught:
            reg.stage(MODEL, version, "Production")
        assert caught.value.error_code == "PERMISSION_DENIED"
        reg.client.set_model_version_tag(MODEL, version, "owner", "ds")  # editing is fine
        with pytest.raises(MlflowException, match="CAN_MANAGE"):
            reg.client.delete_registered_model(MODEL)

        _ok(_cli(server, "permissions", "grant", MODEL, "CAN_MANAGE_PRODUCTION_VERSIONS",
                 "--user", "ds"))  # fmt: skip
        reg.stage(MODEL, version, "Production")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            assert reg.client.get_model_version(MODEL, version).current_stage == "Production"

        # Whoever creates a model through regserve manages it; others do not see it.
        reg.client.create_registered_model("ds-own")
        reg.client.delete_registered_model("ds-own")
    shown = json.loads(_ok(_cli(server, "permissions", "show", MODEL, "-o", "json")))
    levels = {e.get("user_name"): e["all_permissions"][0]["permission_level"]
              for e in shown["access_control_list"]}  # fmt: skip
    assert levels["ds"] == "CAN_MANAGE_PRODUCTION_VERSIONS"


def test_cli_tokens_principals_and_revocation(server: RegServeProcess) -> None:
    out = _ok(_cli(server, "principal", "create", "scorer-bot"))
    assert "scorer-bot" in out
    listed = json.loads(_ok(_cli(server, "principal", "list", "-o", "json")))
    assert [p["displayName"] for p in listed["service_principals"]] == ["scorer-bot"]
    made = json.loads(_ok(_cli(server, "token", "create", "--for", "scorer-bot",
                               "--comment", "scoring", "-o", "json")))  # fmt: skip
    bot = made["token_value"]
    # A non-admin cannot create principals: a message and the "not allowed" exit code.
    denied = _cli(server, "principal", "create", "other", token=bot)
    assert denied.returncode == 3
    assert "PERMISSION_DENIED" in denied.stderr
    mine = json.loads(_ok(_cli(server, "token", "list", "-o", "json", token=bot)))
    assert [t["comment"] for t in mine["token_infos"]] == ["scoring"]
    _ok(_cli(server, "token", "revoke", made["token_info"]["token_id"], token=bot))
    r = httpx.get(f"{server.url}/api/2.0/token/list", headers={"Authorization": f"Bearer {bot}"})
    assert r.status_code == 401
    assert _cli(server, "token", "list", token="rsp_wrong").returncode == 3


def test_token_lifetime_is_capped(server: RegServeProcess) -> None:
    r = server.client.post("/api/2.0/token/create", json={"lifetime_seconds": 10**9})
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = server.client.post("/api/2.0/token/create", json={"comment": "default lifetime"})
    info = r.json()["token_info"]
    assert info["expiry_time"] - info["creation_time"] == 90 * 24 * 3600 * 1000


def test_rate_limit_per_token(server: RegServeProcess) -> None:
    r = server.client.post("/api/2.0/token/create", json={"comment": "busy"})
    busy = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {r.json()['token_value']}"}
    )
    statuses = [busy.get("/api/2.0/token/list") for _ in range(60)]
    limited = [x for x in statuses if x.status_code == 429]
    assert limited, [x.status_code for x in statuses]
    assert limited[0].json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert int(limited[0].headers["retry-after"]) >= 1
    # Another token is not starved by the busy one.
    assert server.client.get("/api/2.0/token/list").status_code == 200
    busy.close()


def test_admin_token_file_is_private(tmp_path: Path) -> None:
    token, created = ensure_admin_token(None, tmp_path)
    assert created
    path = tmp_path / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin_token(None, tmp_path) == (token, False)
