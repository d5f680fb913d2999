"""regserve on a Ray cluster it did not start (``--ray-address``), as a user runs it.

One real two-node cluster for the module (``tests/support/ray_cluster.py``: ``ray start
--head --num-cpus 0`` and ``ray start --address ...``, each with its own temp dir, token
authentication on), and a ``regserve up --backend ray --ray-address`` against it. Issue 22,
item 0: every version went FAILED there (the version's ``runtime_env`` named regserve's
package in a form Serve's JSON config refuses). Item 3: a second gateway (a follower on the
same store) is ready only once it reaches the cluster's versions, and then serves them at once.
One test, in steps, to start the cluster and regserve once. Ray is required in CI
(``REGSERVE_TEST_REQUIRE_SERVICES``): when the cluster cannot start, this fails there and
skips elsewhere.
"""

from __future__ import annotations

import importlib.util
import signal
from collections.abc import Iterator
from typing import Any

import mlflow
import pytest

from tests.conftest import require_service
from tests.support.models import iris_frame
from tests.support.ray_cluster import RayTestCluster
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.ray]

READY = "VERSION_STATE_READY"
MODEL = "on-a-cluster"
# Rows where a weakly regularised model (v1) and a strongly regularised one (v2) disagree.
ROWS = [0, 50, 58, 70, 100, 133]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayTestCluster]:
    if importlib.util.find_spec("ray.serve") is None:
        require_service("Ray Serve is not installed (pip install 'regserve[ray]')")
    started = RayTestCluster()
    try:
        started.start()
    except RuntimeError as exc:
        require_service(f"a Ray cluster could not start here: {exc}")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def server(
    cluster: RayTestCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegServeProcess]:
    data_dir = tmp_path_factory.mktemp("ray-cluster") / "data"
    process = RegServeProcess(data_dir, backend="ray", ray_address=cluster.address)
    _give_token(process, cluster)
    yield process.start(timeout=120)
    process.stop(signal.SIGTERM)
    process.client.close()


def _mlflow_answer(server: RegServeProcess, version: str) -> dict[str, Any]:
    """What MLflow's own pyfunc answers for ROWS, from regserve's copy of the version."""
    frame, _ = iris_frame()
    model = mlflow.pyfunc.load_model(str(server.model_dir(MODEL, version)))
    return {"predictions": model.predict(frame.iloc[ROWS]).tolist()}


def _score(server: RegServeProcess, ref: str) -> tuple[int, Any, str]:
    frame, _ = iris_frame()
    payload = {"dataframe_records": frame.iloc[ROWS].to_dict(orient="records")}
    r = server.score(MODEL, ref, payload)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
    return r.status_code, body, r.headers.get("x-model-version", "")


def _version_log(server: RegServeProcess, version: str) -> str:
    params = {"registered_model_name": MODEL, "endpoint_version_name": version}
    r = server.api("GET", "get-version-logs", params=params)
    assert r.status_code == 200, r.text
    return str(r.json()["logs"])


def test_versions_deploy_serve_and_go_on_a_cluster_regserve_did_not_start(
    cluster: RayTestCluster, server: RegServeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    with user_registry(monkeypatch, server.url, ADMIN_TOKEN) as registry:
        _serve_follow_and_archive(cluster, server, registry)
    # regserve stops: its applications are deleted, the cluster it did not start keeps running
    server.stop(signal.SIGTERM)
    assert server.process is not None
    assert server.process.returncode == 0
    assert cluster.running()
    log = server.log_path.read_text(errors="replace")
    assert "Deleting app ['regserve-" in log


def _serve_follow_and_archive(
    cluster: RayTestCluster, server: RegServeProcess, registry: UserRegistry
) -> None:
    assert registry.register(MODEL) == "1"
    assert server.enable(MODEL).status_code == 200
    version = server.wait_version_state(MODEL, "1", READY, timeout=240)
    assert "Serving on Ray Serve" in version["state_message"]
    status, body, served_by = _score(server, "1")
    assert (status, served_by) == (200, "1"), body
    assert body == _mlflow_answer(server, "1")
    # regserve's package went to the cluster as an uploaded URI, not as a path on this machine
    log = _version_log(server, "1")
    assert "'py_modules': ['gcs://_ray_pkg_" in log, log
    # (the replica's own log is read only when it ran on the node regserve's driver attached
    # to: docs/scale-out.md#states-events-and-logs)

    # a new version deploys by itself (the registry's webhook) while a follower starts
    assert registry.register(MODEL, c=0.01) == "2"
    follower = _follower(cluster, server)
    try:
        # issue 22 item 3: ready (/health 200) only once it reaches the leader's Ray versions
        assert follower.health()["role"] == "follower"
        assert _score(follower, "1") == (200, body, "1")
        log = follower.log_path.read_text(errors="replace")
        assert f"connecting to the Ray cluster at {cluster.address} (to reach" in log

        server.wait_version_state(MODEL, "2", READY, timeout=240)
        expected = _mlflow_answer(server, "2")
        assert expected != body, "the rows must tell the versions apart"
        assert _score(server, "latest") == (200, expected, "2")
        wait_for(lambda: _score(follower, "latest")[2] == "2", 30, "the follower to serve v2")
        assert _score(follower, "latest") == (200, expected, "2")

        # archiving version 1 removes its Serve application; version 2 keeps serving
        registry.stage(MODEL, "1", "Archived")
        for gateway in (server, follower):
            wait_for(lambda g=gateway: _score(g, "1")[0] == 404, 60, "version 1 to answer 404")
        own_log = server.data_dir / "logs" / MODEL / "1.log"
        wait_for(
            lambda: "deleted." in own_log.read_text(errors="replace"),
            60,
            "version 1's Serve application to be deleted",
        )
        assert _score(server, "2") == (200, expected, "2")
        assert _score(follower, "2") == (200, expected, "2")
    finally:
        follower.stop(signal.SIGTERM)
        follower.client.close()
    assert follower.process is not None
    assert follower.process.returncode == 0
    assert _score(server, "2") == (200, expected, "2")  # the follower's exit changed nothing


def _follower(cluster: RayTestCluster, leader: RegServeProcess) -> RegServeProcess:
    """A second gateway on the leader's data dir (its store), given the cluster's address."""
    follower = RegServeProcess(leader.data_dir, backend="ray", ray_address=cluster.address)
    _give_token(follower, cluster)
    return follower.start(timeout=120)


def _give_token(process: RegServeProcess, cluster: RayTestCluster) -> None:
    """The cluster's token, as an operator gives it; regserve picks token mode by itself."""
    process.env["RAY_AUTH_TOKEN"] = cluster.env["RAY_AUTH_TOKEN"]
    process.env.pop("RAY_AUTH_MODE", None)
