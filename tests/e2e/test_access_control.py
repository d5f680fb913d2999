"""Issue #16, "Access control": each hole, tried the way an attacker would, through a real
``regserve up``, the real MLflow client and plain HTTP, with the tokens of users that hold no
rights, CAN_READ or CAN_MANAGE_STAGING_VERSIONS on another user's model.

``alice`` owns ``victim`` (version 1 in Staging, version 2 in Production, alias ``champion``);
``mallory`` holds nothing on it, ``reader`` CAN_READ, ``stager`` CAN_MANAGE_STAGING_VERSIONS.
Each test fails on the code before the fix (the hole is shown first where it helps) and
passes after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import mlflow
import pytest

from tests.support.models import iris_frame, log_iris_version
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess

pytestmark = pytest.mark.e2e

MV = "/api/2.0/mlflow/model-versions"
RM = "/api/2.0/mlflow/registered-models"
LOGGED = "/api/2.0/mlflow/logged-models"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
PERMS = "/api/2.0/permissions/registered-models"
EP = "/api/2.0/preview/mlflow/endpoints"


@dataclass
class World:
    server: RegServeProcess
    tokens: dict[str, str]
    victim_model_id: str
    """The logged model behind victim's version 2 (``m-...``)."""
    victim_root: str
    """Its folder in the artifact store: ``<experiment>/models/<id>/artifacts``."""
    victim_run: str
    mallory_model_id: str

    def as_(self, who: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=60)


def _principal(server: RegServeProcess, name: str) -> str:
    made = server.client.post("/api/2.0/preview/scim/v2/Users", json={"userName": name})
    assert made.status_code == 200, made.text
    token = server.client.post(
        "/api/2.0/token-management/on-behalf-of/tokens",
        json={"application_id": name, "lifetime_seconds": 7200},
    )
    assert token.status_code == 200, token.text
    return str(token.json()["token_value"])


def _grant(server: RegServeProcess, model: str, user: str, level: str) -> None:
    acl = {"access_control_list": [{"user_name": user, "permission_level": level}]}
    r = server.client.patch(f"{PERMS}/{model}", json=acl)
    assert r.status_code == 200, r.text


def _register(server: RegServeProcess, token: str, name: str, c: float = 1.0) -> str:
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, token):
        return log_iris_version(name, c)


def _version(server: RegServeProcess, name: str, version: str) -> dict[str, Any]:
    r = server.client.get(f"{MV}/get", params={"name": name, "version": version})
    assert r.status_code == 200, r.text
    return dict(r.json()["model_version"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = RegServeProcess(tmp_path_factory.mktemp("access") / "data").start()
    tokens = {who: _principal(server, who) for who in ("alice", "mallory", "reader", "stager")}
    _register(server, tokens["alice"], "victim")
    _register(server, tokens["alice"], "victim", c=0.5)
    _grant(server, "victim", "reader", "CAN_READ")
    _grant(server, "victim", "stager", "CAN_MANAGE_STAGING_VERSIONS")
    for version, stage in (("1", "Staging"), ("2", "Production")):
        body = {"name": "victim", "version": version, "stage": stage}
        r = server.client.post(f"{MV}/transition-stage", json=body)
        assert r.status_code == 200, r.text
    alias = {"name": "victim", "alias": "champion", "version": "2"}
    assert server.client.post(f"{RM}/alias", json=alias).status_code == 200
    v2 = _version(server, "victim", "2")
    model_id = v2["source"].removeprefix("models:/")
    logged = server.client.get(f"{LOGGED}/{model_id}").json()["model"]["info"]
    root = logged["artifact_uri"].removeprefix("mlflow-artifacts:/")
    # mallory's own logged model, registered as her own model "mine"
    _register(server, tokens["mallory"], "mine")
    mine = _version(server, "mine", "1")["source"].removeprefix("models:/")
    yield World(server, tokens, model_id, root, v2["run_id"], mine)
    server.close()


def _victim_intact(world: World) -> None:
    """victim's versions, stages, alias and files are as the fixture left them."""
    server = world.server
    stages = {v: _version(server, "victim", v)["current_stage"] for v in ("1", "2")}
    assert stages == {"1": "Staging", "2": "Production"}
    model = server.client.get(f"{RM}/get", params={"name": "victim"}).json()["registered_model"]
    assert model["aliases"] == [{"alias": "champion", "version": "2"}]
    mlmodel = server.client.get(f"{ARTIFACTS}/{world.victim_root}/MLmodel")
    assert mlmodel.status_code == 200, mlmodel.text
    assert "flavors" in mlmodel.text
    logged = server.client.get(f"{LOGGED}/{world.victim_model_id}")
    assert logged.status_code == 200, logged.text
    assert logged.json()["model"]["info"].get("status") == "LOGGED_MODEL_READY"


def _served(server: RegServeProcess) -> list[str]:
    endpoints = server.api("GET", "list").json().get("endpoints", [])
    return [e["registered_model_name"] for e in endpoints]


def _refused(response: httpx.Response, status: int = 403, code: str = "PERMISSION_DENIED") -> None:
    assert response.status_code == status, (response.request.url, response.text)
    body = response.json()
    assert body["error_code"] == code, body
    assert body["message"], body


# -- 1. a deleted model's endpoint, grants and files ---------------------------------------------

ROWS = [0, 50, 100]  # one flower of each class


def _rows() -> dict[str, Any]:
    frame, _ = iris_frame()
    return {"dataframe_split": json.loads(frame.iloc[ROWS].to_json(orient="split", index=False))}


def _predict_locally(server: RegServeProcess, uri: str) -> list[Any]:
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN):
        model = mlflow.pyfunc.load_model(uri)
    frame, _ = iris_frame()
    return [int(p) for p in model.predict(frame.iloc[ROWS])]


def test_deleting_a_served_model_stops_it_and_its_name_starts_bare(world: World) -> None:
    server = world.server
    _register(server, world.tokens["alice"], "doomed")
    _grant(server, "doomed", "reader", "CAN_READ")
    assert server.enable("doomed").status_code == 200
    tags = [{"key": "team", "value": "fraud"}]
    desired = {"node_type_id": "local-default", "tags": tags}
    config = {"registered_model_name": "doomed", "desired_cluster_config": desired}
    assert server.api("PUT", "update-cluster-config", json=config).status_code == 200
    server.wait_version_state("doomed", "1", "VERSION_STATE_READY")
    old = server.score("doomed", "1", _rows())
    assert old.status_code == 200, old.text
    old_files = server.model_dir("doomed", "1")
    old_pid = server.versions("doomed")["1"]["worker_pid"]
    old_uid = Path(f"/proc/{old_pid}").stat().st_uid
    old_log_line = f"[pid {old_pid}]"
    assert old_log_line in _logs(server, "doomed", "1")

    # The admin deletes the served model: serving stops before the client hears 200.
    deleted = server.client.request("DELETE", f"{RM}/delete", json={"name": "doomed"})
    assert deleted.status_code == 200, deleted.text
    assert "doomed" not in _served(server)
    assert not old_files.exists()  # nothing of it left to answer with, or to read
    gone = [e for e in server.events("doomed") if e["event_type"] == "SERVING_DISABLED"]
    assert gone, server.events("doomed")
    assert "was deleted" in gone[-1]["message"]
    assert gone[-1]["principal"] == "admin"
    _refused(server.score("doomed", "1", _rows()), 404, "RESOURCE_DOES_NOT_EXIST")

    # mallory (no rights) takes the name, registers a model of her own, asks for its files.
    _register(server, world.tokens["mallory"], "doomed", c=1e-4)
    acl = server.client.get(f"{PERMS}/doomed").json()["access_control_list"]
    direct = [
        (e["user_name"], e["all_permissions"][0]["permission_level"])
        for e in acl
        if "user_name" in e
    ]
    assert direct == [("mallory", "CAN_MANAGE")]  # reader's grant went with the old model
    with world.as_("reader") as reader:
        _refused(reader.get(f"{RM}/get", params={"name": "doomed"}))
    status = server.api("GET", "get-status", params={"registered_model_name": "doomed"})
    _refused(status, 400, "INVALID_PARAMETER_VALUE")  # nothing is enabled under the name

    # Served again (an admin enables it): the new model's files, the default config, and
    # none of the old model's events.
    assert server.enable("doomed").status_code == 200
    server.wait_version_state("doomed", "1", "VERSION_STATE_READY")
    assert server.model_dir("doomed", "1") != old_files
    expected = _predict_locally(server, "models:/doomed/1")
    assert expected != old.json()["predictions"]  # the two models answer differently
    new = server.score("doomed", "1", _rows())
    assert new.status_code == 200, new.text
    assert new.json()["predictions"] == expected
    assert "desired_cluster_config" not in server.status("doomed")
    assert server.status("doomed")["actual_cluster_config"].get("tags", []) == []
    assert not [e for e in server.events("doomed") if e["event_type"] == "SERVING_DISABLED"]
    # ... none of its log lines, and not its user (its home went with it).
    assert old_log_line not in _logs(server, "doomed", "1")
    new_pid = server.versions("doomed")["1"]["worker_pid"]
    if old_uid != 0:  # workers run as users of their own here
        assert Path(f"/proc/{new_pid}").stat().st_uid != old_uid


def _logs(server: RegServeProcess, name: str, version: str) -> str:
    params = {"registered_model_name": name, "endpoint_version_name": version}
    r = server.api("GET", "get-version-logs", params=params)
    assert r.status_code == 200, r.text
    return str(r.json()["logs"])


def test_renaming_a_served_model_stops_serving_its_old_name(world: World) -> None:
    server = world.server
    _register(server, world.tokens["alice"], "renamed-away")
    assert server.enable("renamed-away").status_code == 200
    body = {"name": "renamed-away", "new_name": "renamed-to"}
    with world.as_("alice") as alice:
        assert alice.post(f"{RM}/rename", json=body).status_code == 200
    assert "renamed-away" not in _served(server)
    events = server.events("renamed-away")
    assert any("renamed to 'renamed-to'" in e["message"] for e in events), events


# -- 2. the artifact routes deny by default -------------------------------------------------------


def test_a_registered_version_s_files_cannot_be_deleted_through_a_parent_folder(
    world: World,
) -> None:
    experiment = world.victim_root.partition("/models/")[0]
    model_folder = f"{experiment}/models/{world.victim_model_id}"
    spellings = [
        model_folder,  # the hole: the guard only looked at paths with an "artifacts" segment
        f"{experiment}//models/{world.victim_model_id}",
        f"{experiment}/./models/{world.victim_model_id}/",
        f"{experiment}%2Fmodels%2F{world.victim_model_id}",  # decoded by the server
        f"{experiment}/models",
        experiment,
    ]
    with world.as_("mallory") as mallory, world.as_("reader") as reader:
        for path in spellings:
            _refused(mallory.delete(f"{ARTIFACTS}/{path}"))
            _refused(reader.delete(f"{ARTIFACTS}/{path}"))
        for path in (f"{model_folder}/artifacts/MLmodel", f"{model_folder}/artifacts"):
            _refused(mallory.delete(f"{ARTIFACTS}/{path}"))
            _refused(mallory.put(f"{ARTIFACTS}/{path}", content=b"flavors: {}\n"))
            _refused(mallory.post(f"/api/2.0/mlflow-artifacts/mpu/create/{path}", json={}))
            _refused(reader.delete(f"{ARTIFACTS}/{path}"))
        # Encodings that would name another path once MLflow decodes them again: 400.
        climbing = ("artifacts/%252E%252E/%252E%252E", "artifacts/%2E%2E/%2E%2E", "%252Fartifacts")
        for path in climbing:
            answer = mallory.delete(f"{ARTIFACTS}/{model_folder}/{path}")
            _refused(answer, 400, "INVALID_PARAMETER_VALUE")
    _victim_intact(world)


def test_artifact_reads_are_allowed_only_inside_readable_files(world: World) -> None:
    mlmodel = f"{ARTIFACTS}/{world.victim_root}/MLmodel"
    run_files = "/api/2.0/mlflow/artifacts/list"
    with world.as_("mallory") as mallory, world.as_("reader") as reader:
        _refused(mallory.get(mlmodel))
        assert reader.get(mlmodel).status_code == 200
        for params in ({}, {"path": "0"}, {"path": "0/models"}, {"path": world.victim_root}):
            _refused(mallory.get(ARTIFACTS, params=params))
        assert reader.get(ARTIFACTS, params={"path": world.victim_root}).status_code == 200
        _refused(reader.get(ARTIFACTS, params={"path": "0"}))  # above the files it may read
        # Another principal's run, registered or not, is not open either.
        _refused(mallory.get(run_files, params={"run_id": world.victim_run}))
        one_file = {"run_id": world.victim_run, "path": "x"}
        _refused(mallory.get("/get-artifact", params=one_file))

        # A principal's own run and logged model are its own, whatever else happens.
        run = mallory.post("/api/2.0/mlflow/runs/create", json={"experiment_id": "0"})
        run_id = run.json()["run"]["info"]["run_id"]
        notes = f"{ARTIFACTS}/0/{run_id}/artifacts/notes.txt"
        assert mallory.put(notes, content=b"mine").status_code == 200
        assert mallory.get(notes).text == "mine"
        assert mallory.get(run_files, params={"run_id": run_id}).status_code == 200
        _refused(reader.get(notes))
        _refused(reader.put(notes, content=b"not yours"))
        assert mallory.delete(notes).status_code == 200


def test_a_run_made_inside_another_model_s_files_opens_none_of_them(world: World) -> None:
    """An experiment may keep its artifacts anywhere in the store, even inside a registered
    version's files: a run there is still inside them, and they are not its owner's."""
    inside = f"mlflow-artifacts:/{world.victim_root}"
    with world.as_("mallory") as mallory:
        experiment = mallory.post(
            "/api/2.0/mlflow/experiments/create",
            json={"name": "inside-victim", "artifact_location": inside},
        )
        assert experiment.status_code == 200, experiment.text
        made = mallory.post(
            "/api/2.0/mlflow/runs/create",
            json={"experiment_id": experiment.json()["experiment_id"]},
        )
        run_id = made.json()["run"]["info"]["run_id"]
        own_folder = f"{ARTIFACTS}/{world.victim_root}/{run_id}/artifacts"
        _refused(mallory.put(f"{own_folder}/MLmodel", content=b"flavors: {}\n"))
        _refused(mallory.get("/api/2.0/mlflow/artifacts/list", params={"run_id": run_id}))
        mine = {"name": "mine", "source": f"runs:/{run_id}/", "run_id": run_id}
        _refused(mallory.post(f"{MV}/create", json=mine))
    _victim_intact(world)


# -- 3. sources, logged models and the tag that names models --------------------------------------


def test_a_version_cannot_be_made_of_files_the_caller_may_not_read(world: World) -> None:
    victim_uri = world.server.client.get(
        f"{MV}/get-download-uri", params={"name": "victim", "version": "2"}
    ).json()["artifact_uri"]
    store = world.server.data_dir / "artifacts"
    local = store / world.victim_root
    model_id = world.victim_model_id
    http_uri = f"http://127.0.0.1:{world.server.port}{ARTIFACTS}/{world.victim_root}"
    sources = [
        {"source": "models:/victim/2"},
        {"source": "models:/victim/Production"},
        {"source": "models:/victim@champion"},
        {"source": "models:/victim/latest"},
        {"source": f"models:/{model_id}", "model_id": model_id},
        {"source": victim_uri, "model_id": model_id},
        {"source": f"runs:/{world.victim_run}/model", "run_id": world.victim_run},
        {"source": str(local), "model_id": model_id},
        {"source": Path(local).as_uri(), "model_id": model_id},
        {"source": http_uri, "model_id": model_id},
        # Her own files, but another principal's run named beside them.
        {"source": f"models:/{world.mallory_model_id}", "run_id": world.victim_run},
    ]
    with world.as_("mallory") as mallory:
        for source in sources:
            r = mallory.post(f"{MV}/create", json={"name": "mine", **source})
            _refused(r)
        versions = mallory.get(f"{MV}/search", params={"filter": "name='mine'"}).json()
        assert [v["version"] for v in versions["model_versions"]] == ["1"]
        # Her own logged model: fine.
        own = f"models:/{world.mallory_model_id}"
        body = {"name": "mine", "source": own, "model_id": world.mallory_model_id}
        assert mallory.post(f"{MV}/create", json=body).status_code == 200
    # A reader of victim may copy its version into a model of its own.
    with world.as_("reader") as reader:
        assert reader.post(f"{RM}/create", json={"name": "reader-copy"}).status_code == 200
        copy = {"name": "reader-copy", "source": "models:/victim/2"}
        assert reader.post(f"{MV}/create", json=copy).status_code == 200


def test_another_principal_s_logged_model_cannot_be_changed(world: World) -> None:
    one = f"{LOGGED}/{world.victim_model_id}"
    failed = {"model_id": world.victim_model_id, "status": "LOGGED_MODEL_UPLOAD_FAILED"}
    with world.as_("mallory") as mallory, world.as_("reader") as reader:
        for client in (mallory, reader):
            _refused(client.delete(one))
            _refused(client.patch(one, json=failed))
            # with the registry's own tag beside it (the fuzz run found this one)
            tag = {"key": "mlflow.modelVersions", "value": "[]"}
            _refused(client.patch(one, json={**failed, "tags": [tag]}))
            _refused(client.patch(f"{one}/tags", json={"tags": [{"key": "k", "value": "v"}]}))
            _refused(client.delete(f"{one}/tags/mlflow.source.name"))
            _refused(client.post(f"{one}/params", json={"params": [{"key": "a", "value": "b"}]}))
    _victim_intact(world)


def _model_versions_tag(answer: dict[str, Any]) -> list[dict[str, str]]:
    tags = {t["key"]: t["value"] for t in answer["info"].get("tags", [])}
    return list(json.loads(tags.get("mlflow.modelVersions", "[]")))


def test_the_model_versions_tag_names_only_readable_models(world: World) -> None:
    one = f"{LOGGED}/{world.victim_model_id}"
    search = {"experiment_ids": ["0"], "max_results": 100}
    with world.as_("mallory") as mallory, world.as_("reader") as reader:
        assert _model_versions_tag(reader.get(one).json()["model"])[0]["name"] == "victim"
        hidden = mallory.get(one)
        assert hidden.status_code == 200, hidden.text
        assert "victim" not in hidden.text
        assert _model_versions_tag(hidden.json()["model"]) == []
        found = mallory.post(f"{LOGGED}/search", json=search)
        assert found.status_code == 200, found.text
        assert world.victim_model_id in found.text  # tracking stays open...
        assert "victim" not in found.text  # ...but not the names of models she cannot read
        by_tag = {**search, "filter": "tags.`mlflow.modelVersions` LIKE '%victim%'"}
        _refused(mallory.post(f"{LOGGED}/search", json=by_tag))
        # Her own model's tag is hers to read; she cannot forge or drop the registry's.
        mine = f"{LOGGED}/{world.mallory_model_id}"
        assert _model_versions_tag(mallory.get(mine).json()["model"])[0]["name"] == "mine"
        claim = json.dumps([{"name": "victim", "version": "2"}])
        forged = {"tags": [{"key": "mlflow.modelVersions", "value": claim}]}
        assert mallory.patch(f"{mine}/tags", json=forged).status_code == 200
        names = {e["name"] for e in _model_versions_tag(mallory.get(mine).json()["model"])}
        assert names == {"mine"}
        _refused(mallory.delete(f"{mine}/tags/mlflow.modelVersions"))


# -- 4. stage moves by spelling -------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["02", " 2", "+2", "2 ", "0_2", "\t2\n", 2])
def test_staging_rights_cannot_archive_production_by_spelling_its_number(
    world: World, spelling: object
) -> None:
    body = {"name": "victim", "version": spelling, "stage": "Archived"}
    with world.as_("stager") as stager:
        r = stager.post(f"{MV}/transition-stage", json=body)
        _refused(r)
        assert "CAN_MANAGE_PRODUCTION_VERSIONS" in r.json()["message"]
    _victim_intact(world)


def test_staging_rights_move_staging_versions_however_spelled(world: World) -> None:
    with world.as_("stager") as stager:
        for version, stage in (("01", "None"), ("+1", "Staging")):
            body = {"name": "victim", "version": version, "stage": stage}
            r = stager.post(f"{MV}/transition-stage", json=body)
            assert r.status_code == 200, r.text
    _victim_intact(world)


# -- 5. model names that need URL encoding --------------------------------------------------------

ODD_NAMES = ["a b%c,d", "line\nbreak"]


def test_names_with_a_space_percent_comma_or_newline_are_served(world: World) -> None:
    server = world.server
    for name in ODD_NAMES:
        _register(server, world.tokens["alice"], name)
        assert server.enable(name).status_code == 200
    for name in ODD_NAMES:
        server.wait_version_state(name, "1", "VERSION_STATE_READY")
        for ref in ("1", "latest"):
            url = f"/model/{quote(name, safe='')}/{ref}/invocations"
            r = server.client.post(url, json=_rows())
            assert r.status_code == 200, (name, r.text)
            assert r.json()["predictions"] == [0, 1, 2]
        assert name in _served(server)
