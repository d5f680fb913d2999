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
    return subprocess.run(
        [sys.executable, "-m", "regserve.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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

        _ok(
            _cli(
                server,
                "permissions",
                "grant",
                MODEL,
                "CAN_MANAGE_PRODUCTION_VERSIONS",
                "--user",
                "ds",
            )
        )
        reg.stage(MODEL, version, "Production")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            assert reg.client.get_model_version(MODEL, version).current_stage == "Production"

        # Whoever creates a model through regserve manages it; others do not see it.
        reg.client.create_registered_model("ds-own")
        reg.client.delete_registered_model("ds-own")
    shown = json.loads(_ok(_cli(server, "permissions", "show", MODEL, "-o", "json")))
    levels = {
        e.get("user_name"): e["all_permissions"][0]["permission_level"]
        for e in shown["access_control_list"]
    }
    assert levels["ds"] == "CAN_MANAGE_PRODUCTION_VERSIONS"


def test_cli_tokens_principals_and_revocation(server: RegServeProcess) -> None:
    out = _ok(_cli(server, "principal", "create", "scorer-bot"))
    assert "scorer-bot" in out
    listed = json.loads(_ok(_cli(server, "principal", "list", "-o", "json")))
    assert [p["displayName"] for p in listed["service_principals"]] == ["scorer-bot"]
    made = json.loads(
        _ok(
            _cli(
                server,
                "token",
                "create",
                "--for",
                "scorer-bot",
                "--comment",
                "scoring",
                "-o",
                "json",
            )
        )
    )
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
    assert token.startswith("rsp_")  # like every token regserve makes: secret scanners know it
    path = tmp_path / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin_token(None, tmp_path) == (token, False)


def _principal_token(server: RegServeProcess, name: str) -> dict[str, str]:
    _ok(_cli(server, "principal", "create", name, "--user"))
    made = json.loads(_ok(_cli(server, "token", "create", "--for", name, "-o", "json")))
    return {"Authorization": f"Bearer {made['token_value']}"}


def test_registered_files_follow_the_model_acl(
    server: RegServeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tracking is open, but the files a version was registered from are the model."""
    # The MLflow client's burst of requests goes through a token of its own: this module's
    # server limits each token to 20 requests per second.
    registering = server.client.post("/api/2.0/token/create", json={"comment": "mlflow"})
    with user_registry(monkeypatch, server.url, registering.json()["token_value"]) as reg:
        reg.register("files-model")
    got = server.client.get(
        "/api/2.0/mlflow/model-versions/get", params={"name": "files-model", "version": "1"}
    )
    assert got.status_code == 200, got.text
    model_id = got.json()["model_version"]["source"].removeprefix("models:/")
    logged = server.client.get(f"/api/2.0/mlflow/logged-models/{model_id}").json()
    root = logged["model"]["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    mlmodel = f"/api/2.0/mlflow-artifacts/artifacts/{root}/MLmodel"
    files = f"/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files"
    outsider = _principal_token(server, "outsider")
    reader = _principal_token(server, "files-reader")
    _ok(_cli(server, "permissions", "grant", "files-model", "CAN_READ", "--user", "files-reader"))

    with httpx.Client(base_url=server.url, timeout=30) as http:
        for method, url, params in (
            ("GET", mlmodel, {}),
            ("GET", files, {"artifact_file_path": "MLmodel"}),
            ("GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": root}),
        ):
            denied = http.request(method, url, params=params, headers=outsider)
            assert denied.status_code == 403, (url, denied.text)
            assert denied.json()["error_code"] == "PERMISSION_DENIED"
            assert "files-model" in denied.json()["message"]
            allowed = http.request(method, url, params=params, headers=reader)
            assert allowed.status_code == 200, (url, allowed.text)
        assert "flavors" in http.get(mlmodel, headers=reader).text
        # Reading is not changing: the files are their creator's (and the served ones need
        # CAN_MANAGE on the model besides).
        overwrite = http.put(mlmodel, content=b"flavors: {}\n", headers=reader)
        assert overwrite.status_code == 403, overwrite.text
        assert "only the principal who created it" in overwrite.json()["message"]
        assert "flavors" in http.get(mlmodel, headers=reader).text
        # httpx would resolve a literal "..": the server decodes this one into the path.
        climbing = http.get(
            f"/api/2.0/mlflow-artifacts/artifacts/0/%2E%2E/{root}/MLmodel", headers=outsider
        )
        assert climbing.status_code == 400, climbing.text
        assert "flavors" not in climbing.text

        # Files of runs that back no registered version stay open to every principal.
        run = http.post(
            "/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, headers=outsider
        ).json()["run"]["info"]
        notes = f"/api/2.0/mlflow-artifacts/artifacts/0/{run['run_id']}/artifacts/notes.txt"
        assert http.put(notes, content=b"mine", headers=outsider).status_code == 200
        assert http.get(notes, headers=outsider).text == "mine"


def test_principals_can_be_deactivated_changed_and_deleted(server: RegServeProcess) -> None:
    headers = _principal_token(server, "leaver")
    r = server.client.post("/api/2.0/mlflow/registered-models/create", json={"name": "kept"})
    assert r.status_code == 200, r.text
    _ok(_cli(server, "permissions", "grant", "kept", "CAN_MANAGE", "--user", "leaver"))
    enable = {"registered_model_name": "kept"}
    ep = "/api/2.0/preview/mlflow/endpoints"
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        assert http.get(f"{PERMS}/kept").status_code == 200

        shown = json.loads(
            _ok(_cli(server, "principal", "update", "leaver", "--inactive", "-o", "json"))
        )
        assert shown["active"] is False
        r = http.get(f"{PERMS}/kept")
        assert r.status_code == 401
        assert "deactivated" in r.json()["message"]
        _ok(_cli(server, "principal", "update", "leaver", "--active", "--allow-cluster-create"))
        assert http.get(f"{PERMS}/kept").status_code == 200
        listed = json.loads(_ok(_cli(server, "principal", "list", "-o", "json")))
        leaver = next(p for p in listed["users"] if p["userName"] == "leaver")
        assert leaver["entitlements"] == [{"value": "allow-cluster-create"}]
        _ok(_cli(server, "principal", "update", "leaver", "--no-allow-cluster-create"))
        r = http.post(f"{ep}/enable", json=enable)
        assert r.status_code == 403
        assert "allow-cluster-create" in r.json()["message"]

        bad = server.client.patch(
            f"/api/2.0/preview/scim/v2/Users/{leaver['id']}",
            json={"Operations": [{"op": "add", "path": "roles", "value": [{"value": "x"}]}]},
        )
        assert bad.status_code == 400
        assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        me = server.client.get("/api/2.0/preview/scim/v2/Me").json()
        frozen = server.client.delete(f"/api/2.0/preview/scim/v2/Users/{me['id']}")
        assert frozen.status_code == 400
        assert "bootstrap admin" in frozen.json()["message"]

        _ok(_cli(server, "principal", "delete", "leaver"))
        assert http.get(f"{PERMS}/kept").status_code == 401
    acl = server.client.get(f"{PERMS}/kept").json()["access_control_list"]
    assert all(e.get("user_name") != "leaver" for e in acl)
    audit = server.client.get("/api/2.0/regserve/audit-events").json()["events"]
    kinds = [e["event_type"] for e in audit]
    assert "PRINCIPAL_UPDATED" in kinds
    assert "PRINCIPAL_DELETED" in kinds
