"""``--registry-uri``: regserve follows an existing registry instead of hosting one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.models import iris_requirements
from tests.support.server import RegServeProcess

pytestmark = pytest.mark.e2e

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def test_serves_from_an_existing_database_registry(tmp_path: Path) -> None:
    registry_uri = f"sqlite:///{tmp_path / 'team-registry.db'}"
    # A separate process, as a team's own training job would be (and MLflow's fluent API
    # keeps the active experiment in process globals).
    script = (
        "import mlflow, sys\n"
        "from tests.support.models import log_iris_version\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "mlflow.set_experiment(experiment_id=mlflow.create_experiment('team', sys.argv[2]))\n"
        "assert log_iris_version('external-model', requirements=sys.argv[3:]) == '1'\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            registry_uri,
            str(tmp_path / "artifacts"),
            *iris_requirements(),
        ],
        check=True,
        cwd=Path(__file__).parents[2],
        timeout=300,
    )

    server = RegServeProcess(tmp_path / "data").start("--registry-uri", registry_uri)
    try:
        assert server.enable("external-model").status_code == 200
        server.wait_version_state("external-model", "1", "VERSION_STATE_READY")
        r = server.score("external-model", "latest", {"dataframe_records": [ROW]})
        assert r.status_code == 200
        assert r.json() == {"predictions": [0]}
        # regserve hosts no registry of its own here
        assert server.client.get("/api/2.0/mlflow/registered-models/search").status_code == 404
    finally:
        server.close()
