"""`mlflow models serve` for a model directory: the reference regserve is compared with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.server import free_port


@contextmanager
def mlflow_models_serve(
    model_dir: Path, log_dir: Path, python: Path | None = None
) -> Iterator[str]:
    """Run it from this venv, or the one of ``python`` (the venv's bin goes on PATH: it starts
    `uvicorn`, or gunicorn for MLflow 1.x, by name)."""
    port = free_port()
    bin_dir = str(Path(python or sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    command = [
        str(Path(bin_dir) / "mlflow"),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    log_path = log_dir / f"mlflow-serve-{port}.log"
    with log_path.open("wb") as log:
        # Its own session, so that stopping it also stops the uvicorn it starts.
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log_path.read_text()
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
