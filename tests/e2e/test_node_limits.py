"""Node types as resource boundaries, end to end: a node types file, a cluster given a small
one, its workers in the cluster's cgroup with its limits, a request that takes more memory
than the cluster has (the caller gets a 503, the event and the version's state say which
limit), the worker serving again, and the cgroup gone after disable."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from regserve.backends.local.limits import ResourceLimits
from regserve.nodes import NodeTypes
from tests.conftest import require_service
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, free_port, wait_for

pytestmark = pytest.mark.e2e

MODEL = "memory-hog"
READY = "VERSION_STATE_READY"
LIMIT = "the cluster used its 500 MiB memory limit (node type tiny)"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegServeProcess]:
    mechanism = ResourceLimits(NodeTypes.defaults(), tmp_path / "probe").probe()
    if not mechanism.startswith("cgroup"):
        require_service(f"no writable cgroups here (node types fall back to {mechanism})")
    types = tmp_path / "node-types.yaml"
    types.write_text(
        "node_types:\n"
        "  - {id: tiny, cores: 0.5, memory: 500MiB, replicas: 1}\n"
        "  - {id: roomy, cores: 2, memory: 4GiB}\n"
    )
    process = RegServeProcess(tmp_path / "data", node_types_file=str(types)).start()
    yield process
    process.close()


@pytest.fixture
def registry(server: RegServeProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserRegistry]:
    with user_registry(monkeypatch, server.url, ADMIN_TOKEN) as reg:
        yield reg


def _log_memory_hog(name: str) -> str:
    """Register a pyfunc that holds ``mb`` MiB (its input) while it answers."""

    class Hog(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle ships it by value
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            held = b"x" * (int(model_input["mb"].iloc[0]) * 1024 * 1024)  # touches every page
            return [len(held) // (1024 * 1024)]

    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Hog(),
            input_example=pd.DataFrame({"mb": [1]}),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def _hold(server: RegServeProcess, mb: int) -> Any:
    return server.score(MODEL, "1", {"dataframe_records": [{"mb": mb}]}, timeout=60)


def _cgroup_dirs(pid: int) -> dict[str, Path]:
    """The worker's cpu and memory cgroup directories, as /proc says."""
    found: dict[str, Path] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else ["cgroup2"]:
            if controller in ("cpu", "memory"):
                found[controller] = Path("/sys/fs/cgroup", controller, path.lstrip("/"))
            elif controller == "cgroup2" and "/regserve/" in path:
                root = Path(
                    "/sys/fs/cgroup/unified"
                    if Path("/sys/fs/cgroup/unified").is_dir()
                    else "/sys/fs/cgroup"
                )
                found["cpu"] = found["memory"] = root / path.lstrip("/")
    return found


def _limits_of(dirs: dict[str, Path]) -> tuple[str, str]:
    if (dirs["cpu"] / "cpu.max").exists():
        return (dirs["cpu"] / "cpu.max").read_text().split()[0], (
            dirs["memory"] / "memory.max"
        ).read_text().strip()
    quota = (dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip()
    return quota, (dirs["memory"] / "memory.limit_in_bytes").read_text().strip()


def _events(server: RegServeProcess, kind: str) -> list[str]:
    return [e["message"] for e in server.events(MODEL) if e["event_type"] == kind]


def test_a_cluster_is_a_resource_boundary_and_an_oom_kill_is_named(
    server: RegServeProcess, registry: UserRegistry
) -> None:
    offered = server.client.get("/api/2.0/clusters/list-node-types").json()["node_types"]
    assert [t["node_type_id"] for t in offered] == ["local-default", "tiny", "roomy"]
    assert offered[1] == {
        "node_type_id": "tiny",
        "memory_mb": 500,
        "num_cores": 0.5,
        "description": "500 MB Memory, 0.5 Cores",
        "instance_type_id": "tiny",
    }

    version = _log_memory_hog(MODEL)
    assert server.enable(MODEL).status_code == 200
    first = server.wait_version_state(MODEL, version, READY)
    assert any("limits: no limits (local-default" in m for m in _events(server, "CLUSTER_STARTED"))

    # A node type change starts new workers beside the running one, in the new node type's
    # cgroup, then retires the old one (blue-green).
    r = server.api(
        "PUT",
        "update-cluster-config",
        json={
            "registered_model_name": MODEL,
            "desired_cluster_config": {"node_type_id": "tiny"},
        },
    )
    assert r.status_code == 200, r.text
    limits = [f"(limits: cgroup v{n}, 0.5 cores, 500 MiB" for n in (1, 2)]
    wait_for(
        lambda: any(w in m for m in _events(server, "CLUSTER_UPDATED") for w in limits),
        120,
        "the cluster to move to the tiny node type",
    )
    restarted = server.versions(MODEL)[version]
    assert restarted["state"] == READY
    assert restarted["worker_pid"] != first["worker_pid"]
    pid = restarted["worker_pid"]
    dirs = _cgroup_dirs(pid)
    assert all("/regserve/" in str(p) and p.parent.name == f"m-{MODEL}" for p in dirs.values())
    assert _limits_of(dirs) == ("50000", str(500 * 1024 * 1024))
    assert _hold(server, 1).json() == {"predictions": [1]}

    # One request holds more than the cluster has: the kernel kills the worker.
    r = _hold(server, 1200)
    assert r.status_code == 503, r.text
    assert r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    crashed = wait_for(
        lambda: [m for m in _events(server, "WORKER_CRASHED") if LIMIT in m], 30, "the OOM event"
    )
    # The first crash after serving restarts at once (the backoff starts with the second).
    assert crashed[0].startswith(f"Worker pid {pid} was killed: {LIMIT}; restarting now")

    # It serves again, in the same cluster cgroup.
    again = wait_for(lambda: _hold(server, 1).status_code == 200, 60, "the worker to serve again")
    assert again
    new_pid = server.versions(MODEL)[version]["worker_pid"]
    assert new_pid != pid
    assert _cgroup_dirs(new_pid) == dirs

    assert server.disable(MODEL).status_code == 200
    wait_for(lambda: not any(p.exists() for p in dirs.values()), 30, "the cgroup to be removed")
    assert not any(p.parent.exists() for p in dirs.values())


def test_a_bad_node_types_file_stops_regserve_at_start(tmp_path: Path) -> None:
    path = tmp_path / "node-types.yaml"
    path.write_text("node_types:\n  - {id: tiny, cores: 1}\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["REGSERVE_NODE_TYPES_FILE"] = str(path)
    command = [
        sys.executable,
        "-m",
        "regserve.cli",
        "up",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        f"regserve: cannot start: node types file {path}: 'tiny' needs cores and memory"
    )
