"""Environment build and start times: regserve beside `mlflow models serve --env-manager uv`.

For the same saved iris model, measures, in one run:
- regserve cold: a new data dir and an empty uv package cache (everything is downloaded);
- regserve warm: a new data dir, uv's package cache warm (a new environment, no downloads);
- regserve cached: a restart on the same data dir (the environment is reused);
- mlflow models serve --env-manager uv, cold (empty caches) and warm (its env cache kept).
Each figure is seconds from the command (or the enable call) to the first good prediction.
Run: ``.venv/bin/python -m bench.env_times``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from bench.control_latency import TOKEN, _free_port

BIN = Path(sys.executable).parent
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = {"dataframe_records": [ROW]}


def save_model(path: Path) -> Path:
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=list(ROW))
    model = LogisticRegression(max_iter=300).fit(frame, data.target)
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(frame, model.predict(frame)),
        input_example=frame.head(2),
        pip_requirements=[f"mlflow=={mlflow.__version__}", "scikit-learn"],
    )
    return path


def _wait_ok(
    url: str, headers: dict[str, str], started: float, proc: subprocess.Popen[bytes]
) -> float:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            r = httpx.post(url, json=BODY, headers=headers, timeout=5)
            if r.status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > 1800:
            raise TimeoutError(url)
        time.sleep(0.2)


def regserve_time(data_dir: Path, registry_db: str, env: dict[str, str], enable: bool) -> float:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(BIN / "regserve"),
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--registry-uri",
        registry_db,
    ]
    started = time.monotonic()
    with (data_dir.parent / f"regserve-{port}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        if enable:
            started = time.monotonic()  # cold/warm: from the enable call
            httpx.post(
                f"{url}/api/2.0/preview/mlflow/endpoints/enable",
                headers=headers,
                json={"registered_model_name": "env-bench"},
            )
        return _wait_ok(f"{url}/model/env-bench/1/invocations", headers, started, proc)
    finally:
        proc.terminate()
        proc.wait(60)


def mlflow_serve_time(model: Path, env: dict[str, str]) -> float:
    port = _free_port()
    cmd = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        str(model),
        "--env-manager",
        "uv",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    started = time.monotonic()
    with (model.parent / f"mlflow-{port}.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        return _wait_ok(f"http://127.0.0.1:{port}/invocations", {}, started, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="regserve-env-bench-"))
    model = work / "model"
    save_model(model)
    registry = f"sqlite:///{work / 'registry.db'}"
    mlflow.set_tracking_uri(registry)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("b", str(work / "art")))
    mlflow.register_model(str(model), "env-bench")
    base = {**os.environ, "REGSERVE_ADMIN_TOKEN": TOKEN, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for leaked in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID"):
        base.pop(leaked, None)  # MLflow exports what this process set; the servers need none
    results: list[tuple[str, float]] = []
    cold_cache = {**base, "UV_CACHE_DIR": str(work / "uv-cache-cold")}
    results.append(
        ("regserve cold (empty uv cache)", regserve_time(work / "d1", registry, cold_cache, True))
    )
    results.append(
        ("regserve warm (new env, uv cache warm)", regserve_time(work / "d2", registry, base, True))
    )
    results.append(
        ("regserve cached (restart, env reused)", regserve_time(work / "d2", registry, base, False))
    )
    mlflow_cold = {
        **base,
        "UV_CACHE_DIR": str(work / "uv-cache-mlflow"),
        "MLFLOW_ENV_ROOT": str(work / "mlenv"),
    }
    results.append(
        ("mlflow models serve --env-manager uv, cold", mlflow_serve_time(model, mlflow_cold))
    )
    results.append(
        ("mlflow models serve --env-manager uv, warm", mlflow_serve_time(model, mlflow_cold))
    )
    print("\nseconds from start (or enable) to the first good prediction", flush=True)
    for what, seconds in results:
        print(f"{what:48} {seconds:8.1f}", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
