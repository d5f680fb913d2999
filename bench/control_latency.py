"""How fast regserve follows: enable -> READY, and a registry change -> the URL following it.

Starts a real ``regserve up`` (default poll interval unless REGSERVE_POLL_INTERVAL is set),
drives it with plain MLflow and HTTP, and prints a table. Run: ``.venv/bin/python -m
bench.control_latency [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

TOKEN = "rs-bench-token"
NAME = "bench-iris"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(predicate: Callable[[], bool], timeout: float = 300) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
    return time.monotonic() - started


def _register(c: float) -> str:
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=list(ROW))
    model = LogisticRegression(max_iter=300, C=c).fit(frame, data.target)
    example = frame.head(3)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=example,
            registered_model_name=NAME,
            signature=infer_signature(example, model.predict(example)),
            pip_requirements=["scikit-learn", "mlflow"],
        )
    return str(info.registered_model_version)


class Bench:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})
        self.registry = MlflowClient(tracking_uri=url, registry_uri=url)

    def state(self, version: str) -> str | None:
        r = self.http.get(
            "/api/2.0/preview/mlflow/endpoints/list-versions",
            params={"registered_model_name": NAME},
        )
        if r.status_code != 200:
            return None
        states = {v["endpoint_version_name"]: v["state"] for v in r.json()["endpoint_versions"]}
        return states.get(version)

    def answered_by(self, ref: str) -> str | None:
        r = self.http.post(f"/model/{NAME}/{ref}/invocations", json={"dataframe_records": [ROW]})
        return r.headers.get("x-model-version") if r.status_code == 200 else str(r.status_code)

    def stage(self, version: str, stage: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.registry.transition_model_version_stage(NAME, version, stage)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5, help="stage moves to time")
    args = parser.parse_args()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="regserve-bench-"))
    env = {**os.environ, "REGSERVE_ADMIN_TOKEN": TOKEN}
    cmd = [
        sys.executable,
        "-m",
        "regserve.cli",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    with (data_dir / "regserve.log").open("wb") as log:
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    os.environ.update(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_TOKEN=TOKEN)
    mlflow.set_tracking_uri(url)
    rows: list[tuple[str, list[float]]] = []
    try:
        _until(lambda: _healthy(url), 120)
        bench = Bench(url)
        v1 = _register(1.0)
        started = time.monotonic()
        bench.http.post(
            "/api/2.0/preview/mlflow/endpoints/enable", json={"registered_model_name": NAME}
        )
        _until(lambda: bench.state(v1) == "VERSION_STATE_READY")
        rows.append(("enable -> v1 READY", [time.monotonic() - started]))
        v2 = _register(0.5)
        rows.append(
            (
                "v2 registered -> latest answers from v2",
                [_until(lambda: bench.answered_by("latest") == v2)],
            )
        )
        moves = []
        for i in range(args.rounds):
            target = v2 if i % 2 == 0 else v1
            bench.stage(target, "Production")
            bench.stage(v1 if target == v2 else v2, "Staging")
            moves.append(_until(lambda t=target: bench.answered_by("Production") == t))  # type: ignore[misc]
        rows.append(("stage move -> Production URL follows", moves))
        bench.stage(v1, "Archived")
        rows.append(
            ("archive v1 -> its URL gives 404", [_until(lambda: bench.answered_by(v1) == "404")])
        )
    finally:
        server.terminate()
        server.wait(30)
    poll = os.environ.get("REGSERVE_POLL_INTERVAL", "3 (default)")
    print(f"\nregserve control latency (poll interval {poll} s), seconds")
    print(f"{'what':45} {'n':>3} {'median':>8} {'max':>8}")
    for what, values in rows:
        print(f"{what:45} {len(values):>3} {statistics.median(values):>8.2f} {max(values):>8.2f}")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
