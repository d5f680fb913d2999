"""The three servers the bench drives, each a real process on loopback, and the bench model."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.procs import cmdline, descendants, rss_mb
from regserve.backends.local.paths import run_dir_for

__all__ = [
    "COLUMNS",
    "TOKEN",
    "Server",
    "free_port",
    "log_bench_model",
    "open_way_to",
    "record_pids",
    "served_model_dir",
    "start_ceiling",
    "start_mlflow",
    "start_regserve",
    "wait_until",
]

TOKEN = "rs-bench-token"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


class Server:
    """A started process (in its own session) and the URL it answers on."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.name = name
        self.process = process
        self.url = url
        self.log = log
        self.data_dir: Path | None = None
        """regserve's data dir (for regserve only)."""
        self.stop_signal = signal.SIGTERM
        """How :meth:`stop` ends it: SIGINT for regserve (its workers stop too; SIGTERM would
        leave them running for a next start to adopt)."""

    def tree(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]

    def rss(self) -> dict[int, tuple[str, float]]:
        return {pid: (cmdline(pid), rss_mb(pid)) for pid in self.tree()}

    def wait_http(self, path: str, timeout: float = 180) -> None:
        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; log {self.log}:\n{self.log.read_text()}")
            try:
                return httpx.get(self.url + path, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout, f"{self.name} at {self.url}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, self.stop_signal)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _start(
    name: str, cmd: list[str], env: dict[str, str], log: Path, url: str, mode: str = "wb"
) -> Server:
    with log.open(mode) as out:
        process = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name, process, url, log)


def start_regserve(
    data_dir: Path,
    workdir: Path,
    settings: dict[str, str] | None = None,
    tag: str = "",
    port: int | None = None,
) -> Server:
    """``regserve up`` on ``port`` (default: a fresh one); ``settings`` are extra ``REGSERVE_*``
    variables. The log is appended to, so that a restart on the same data dir keeps it."""
    port = port or free_port()
    env = {**os.environ, "REGSERVE_ADMIN_TOKEN": TOKEN, **(settings or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    open_way_to(data_dir)
    cmd = [str(_BIN / "regserve"), "up", "--port", str(port), "--data-dir", str(data_dir)]
    log = workdir / f"regserve{tag}.log"
    server = _start("regserve", cmd, env, log, f"http://127.0.0.1:{port}", mode="ab")
    server.data_dir = data_dir
    server.stop_signal = signal.SIGINT
    server.wait_http("/health")
    return server


def open_way_to(data_dir: Path) -> None:
    """mkdtemp's directories are 0700; as root, regserve gives each model's workers a user of
    their own only when they can pass through to the data dir (docs/security.md#trust-model),
    which is how it is measured here: let every user pass (not list)."""
    for directory in data_dir.parents:
        if directory.exists() and directory.stat().st_uid == os.geteuid():
            directory.chmod(directory.stat().st_mode | 0o111)
        if directory == Path(tempfile.gettempdir()):
            return


def record_pids(server: Server, pattern: str) -> set[int]:
    """The pids in ``server``'s worker records named like ``pattern`` in its run dir: ``*.pid``
    serving workers, ``*.tpl`` templates, ``*.tpl.standby`` their standbys, ``*.warm`` warm
    processes (a forked process has its parent's command line: records tell them apart)."""
    if server.data_dir is None:
        return set()
    pids: set[int] = set()
    for record in run_dir_for(server.data_dir).glob(pattern):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids.add(int(json.loads(record.read_text())["pid"]))
    return pids


def served_model_dir(data_dir: Path, model: str, version: str) -> Path:
    """regserve's copy of a served version's files in ``data_dir`` (for ``mlflow models serve``
    of the very same files): ``models/<model>-<digest>/<version>-<digest>`` for a model name of
    letters, digits and dashes (``regserve.controller.model_files``)."""
    found = sorted((data_dir / "models").glob(f"{model}-*/{version}-*"))
    if len(found) != 1:
        raise RuntimeError(f"expected one copy of {model} v{version} in {data_dir}: {found}")
    return found[0]


def start_mlflow(model_dir: Path, workdir: Path, tag: str) -> Server:
    """``mlflow models serve --env-manager local`` (it starts uvicorn by name: bin on PATH)."""
    port = free_port()
    env = {**os.environ, "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [
        str(_BIN / "mlflow"),
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
    log = workdir / f"mlflow-{tag}.log"
    server = _start(f"mlflow {tag}", cmd, env, log, f"http://127.0.0.1:{port}")
    server.wait_http("/ping")
    return server


def start_ceiling(workdir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.hello", "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    server = _start("ceiling", cmd, env, workdir / "ceiling.log", f"http://127.0.0.1:{port}")
    server.wait_http("/")
    return server


def log_bench_model(name: str, c: float = 1.0) -> tuple[str, str, str, str]:
    """Log a signed iris LogisticRegression with an input example, as MLflow does by default,
    and register it; returns (version, model URI, run id, model id)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    frame = pd.DataFrame(data.data, columns=COLUMNS)
    model = LogisticRegression(max_iter=300, C=c).fit(frame, data.target)
    example = frame.head(3)
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=example,
            registered_model_name=name,
            signature=infer_signature(example, model.predict(example)),
            pip_requirements=["scikit-learn", "mlflow"],
        )
    return (
        str(info.registered_model_version),
        str(info.model_uri),
        str(info.run_id),
        str(info.model_id),
    )


def start_ray_serve(model_dir: Path, workdir: Path) -> Server:
    """Plain Ray Serve (``bench/ray_serve.py``): a hand-written deployment of the same model,
    its HTTP proxy on 127.0.0.1."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="rs-ray-"))  # short: Ray binds sockets in it
    cmd = [
        sys.executable,
        "-m",
        "bench.ray_serve",
        "--port",
        str(port),
        "--model-dir",
        str(model_dir),
        "--temp-dir",
        str(temp_dir),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    log = workdir / "ray-serve.log"
    server = _start("ray serve", cmd, env, log, f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"plain Ray Serve exited; log {log}:\n{log.read_text()[-3000:]}")
        return "ray serve ready" in log.read_text(errors="replace")

    wait_until(ready, 300, "plain Ray Serve")
    return server
