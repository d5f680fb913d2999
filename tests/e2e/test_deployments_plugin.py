"""The MLflow deployments plugin, through ``mlflow.deployments`` and the ``mlflow deployments``
command, against a real regserve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.deployments import get_deploy_client
from mlflow.exceptions import MlflowException

from tests.support.models import iris_frame
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "plugin-iris"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegServeProcess, Any]]:
    server = RegServeProcess(tmp_path_factory.mktemp("plugin") / "data")
    server.start()
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
        reg.register(MODEL)
        mp.setenv("REGSERVE_TOKEN", ADMIN_TOKEN)
        mp.setenv("REGSERVE_CONFIG_FILE", "/nonexistent/profiles.ini")
        mp.delenv("REGSERVE_HOST", raising=False)
        yield server, mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    server.close()


def test_python_api_lifecycle(world: tuple[RegServeProcess, Any]) -> None:
    server, model = world
    client = get_deploy_client(f"regserve:/{server.url}")
    created = client.create_deployment(MODEL, f"models:/{MODEL}")
    assert created["name"] == MODEL
    assert created["state"] == "ENDPOINT_STATE_READY"  # create blocks until it serves
    assert [v["state"] for v in created["versions"]] == ["VERSION_STATE_READY"]
    assert [d["name"] for d in client.list_deployments()] == [MODEL]
    assert client.get_deployment(MODEL)["refs"]["latest"] == "1"

    frame, _ = iris_frame()
    answer = client.predict(MODEL, frame.head(20))
    assert list(answer.get_predictions()[0]) == list(model.predict(frame.head(20)))
    by_ref = client.predict(f"{MODEL}/1", frame.head(3).to_dict(orient="records"))
    assert by_ref["predictions"] == list(model.predict(frame.head(3)))

    with pytest.raises(MlflowException) as again:
        client.create_deployment(MODEL, f"models:/{MODEL}")
    assert again.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as wrong:
        client.create_deployment("other", f"models:/{MODEL}")
    assert wrong.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as missing:
        client.predict("no-such-model", frame.head(1))
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    client.update_deployment(MODEL, config={"tag.regserve.batching": "off"})
    # A regserve.* tag needs new workers: the update runs blue-green in the background.
    wanted = [{"key": "regserve.batching", "value": "off"}]
    wait_for(
        lambda: client.get_deployment(MODEL)["actual_cluster_config"]["tags"] == wanted,
        120,
        "the blue-green update to apply the tag",
    )

    client.delete_deployment(MODEL)
    with pytest.raises(MlflowException) as gone:
        client.get_deployment(MODEL)
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.delete_deployment(MODEL)  # idempotent


def _mlflow(*args: str) -> str:
    env = {**os.environ}
    done = subprocess.run(
        [sys.executable, "-m", "mlflow", "deployments", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_mlflow_deployments_command(world: tuple[RegServeProcess, Any], tmp_path: Path) -> None:
    server, model = world
    target = f"regserve:/{server.url}"
    _mlflow("create", "-t", target, "--name", MODEL, "-m", f"models:/{MODEL}/1")
    assert "ENDPOINT_STATE_READY" in _mlflow("get", "-t", target, "--name", MODEL)
    frame, _ = iris_frame()
    rows = tmp_path / "rows.json"
    frame.head(10).to_json(rows)
    out = _mlflow("predict", "-t", target, "--name", MODEL, "--input-path", str(rows))
    predictions = json.loads(out.strip().splitlines()[-1])["predictions"]
    assert predictions == list(model.predict(frame.head(10)))
    _mlflow("delete", "-t", target, "--name", MODEL)
    assert server.api("GET", "list").json()["endpoints"] == []


def test_predict_input_file_is_explained_and_takes_scoring_bodies(
    world: tuple[RegServeProcess, Any], tmp_path: Path
) -> None:
    """`mlflow deployments help -t regserve` says what --input-path holds, with an example,
    and predict reads every shape it names (the README's curl body included)."""
    server, model = world
    shown = _mlflow("help", "-t", "regserve")
    assert "--input-path FILE" in shown
    assert "FILE is JSON" in shown
    assert "a CSV file is not read" in shown
    assert '{"dataframe_records": [' in shown
    assert "mlflow deployments predict -t regserve:/http://127.0.0.1:8080" in shown

    server.enable(MODEL)
    server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
    frame, _ = iris_frame()
    rows = frame.head(3)
    expected = list(model.predict(rows))
    records = rows.to_dict(orient="records")
    split = json.loads(rows.to_json(orient="split", index=False))
    bodies = {
        "records.json": records,
        "curl-body.json": {"dataframe_records": records},
        "split.json": {"dataframe_split": split},
    }
    target = f"regserve:/{server.url}"
    for file_name, body in bodies.items():
        path = tmp_path / file_name
        path.write_text(json.dumps(body))
        out = _mlflow("predict", "-t", target, "--name", f"{MODEL}/1", "--input-path", str(path))
        assert json.loads(out.strip().splitlines()[-1])["predictions"] == expected, file_name
    server.disable(MODEL)
