"""Every conformance case, sent to `mlflow models serve` and to a worker on the same model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conformance_cases import CASES, Case
from tests.support.conformance import Answer, assert_conformant

from .conftest import WireClient, WorkerProcess

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def mlflow_server(iris_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow models serve` from this venv (it runs `uvicorn`, so the venv's bin is on PATH)."""
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    log = (tmp_path_factory.mktemp("mlflow-serve") / "serve.log").open("wb")
    command = [
        str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", str(iris_model_dir),
        "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1",
    ]  # fmt: skip
    # Its own session, so that stopping it also stops the uvicorn it starts.
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, Path(log.name).read_text()
            try:
                if httpx.get(url + "/ping").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _mlflow_answer(url: str, case: Case) -> Answer:
    headers = {} if case.content_type is None else {"Content-Type": case.content_type}
    # A fresh connection per case: MLflow drops the connection after its 500s.
    response = httpx.post(url + "/invocations", content=case.body, headers=headers, timeout=60)
    return Answer.from_httpx(response)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 45
    assert len({case.case_id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.case_id for case in CASES])
def test_worker_answers_like_mlflow(
    case: Case, mlflow_server: str, worker: WorkerProcess, client: WireClient
) -> None:
    theirs = _mlflow_answer(mlflow_server, case)
    ours = client.call(case.content_type, case.body)
    assert_conformant(case, Answer(*ours), theirs)
    if case.diverges is not None:
        assert theirs.status != case.diverges, f"MLflow now answers {case.case_id} well"
