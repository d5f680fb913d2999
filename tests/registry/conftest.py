"""A real hosted MLflow server on a free port, and a real MLflow client in a child process.

MLflow's server keeps its stores in process globals, so one hosted server serves the whole
session; tests use distinct model names. The MLflow client runs in child processes: the
hosted server owns this process's MLflow tracking URI (its handlers rely on it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from regserve.registry.hosted import HostedRegistry, create_hosted_registry

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class HostedServer:
    registry: HostedRegistry
    url: str
    port: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_MLFLOW_", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "src")])
    return env


# Like tests.support.models.log_iris_version, with requirements given: inferring them runs a
# child process per log (about 6 s), which these tests do not need.
_LOG_VERSION = """
def log_version(name, c=1.0):
    import sklearn
    from mlflow.models import infer_signature
    from tests.support.models import train_iris
    model, frame = train_iris(c)
    example = frame.head(3)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", input_example=example,
            signature=infer_signature(example, model.predict(example)),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            registered_model_name=name,
        )
    return info.registered_model_version
"""


def run_mlflow(tracking_uri: str, code: str) -> str:
    """Run ``code`` with plain MLflow against ``tracking_uri`` in a child; return its stdout."""
    prelude = "import mlflow\nfrom mlflow import MlflowClient\nclient = MlflowClient()\n"
    prelude += _LOG_VERSION
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=child_env(tracking_uri),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="session")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostedServer]:
    registry = create_hosted_registry(tmp_path_factory.mktemp("regserve-data"))
    port = free_port()
    config = uvicorn.Config(registry.app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="hosted-mlflow", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during startup"
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.05)
    yield HostedServer(registry, f"http://127.0.0.1:{port}", port)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def two_versions(hosted: HostedServer) -> str:
    """``reg-two``: v1 Staging, v2 Production with alias champion, v3 Archived."""
    name = "reg-two"
    run_mlflow(
        hosted.url,
        f"""
        for c in (1.0, 0.5, 0.25):
            log_version({name!r}, c=c)
        client.transition_model_version_stage({name!r}, "1", "Staging")
        client.transition_model_version_stage({name!r}, "2", "Production")
        client.transition_model_version_stage({name!r}, "3", "Archived")
        client.set_registered_model_alias({name!r}, "champion", "2")
        client.update_registered_model({name!r}, description="two and a bit")
        """,
    )
    return name
