"""``make bench-start``: regserve's start-up paths against ``mlflow models serve`` of the same
registered model, measured in one run on this machine.

For each env manager asked for (``--env-manager``, default ``local virtualenv``):

1. ``regserve up --demo`` on a fresh data dir: seconds to listening, to the demo registered, to
   the first prediction (:mod:`bench.start`);
2. a new version registered (through regserve's MLflow API, from version 2's source) to its
   first prediction;
3. a replica of version 2 killed with SIGKILL under a steady trickle of requests: seconds until
   another replica serves it, and how many requests failed meanwhile;
4. ``mlflow models serve -m models:/iris-classifier/2 --env-manager local`` from regserve's
   registry: seconds from the command to its first prediction (the yardstick), and the floor
   of a restart: a new interpreter importing what the demo's warm process imports;
5. Ctrl-C, then the same ``regserve up --demo`` on the same data dir: to its first prediction.

It prints a table and the ratios to ``mlflow models serve`` (the issue's targets: a fresh demo at
most 1.0x, a restart and a new version at most 0.25x).

Run: ``.venv/bin/python -m bench.start_vs_mlflow [--env-manager local] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.start import (
    BODY,
    MODEL,
    TOKEN,
    StartedRegServe,
    fresh_demo,
    restart_demo,
    stop,
)

_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"
_API = "/api/2.0/preview/mlflow/endpoints"
_TIMEOUT = 600.0
_HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Any, what: str, timeout: float = _TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {timeout:g} s")


def _scores(url: str, ref: str) -> bool:
    r = httpx.post(
        f"{url}/model/{MODEL}/{ref}/invocations", json=BODY, headers=_HEADERS, timeout=30
    )
    return r.status_code == 200


def new_version_to_first_prediction(started: StartedRegServe) -> float:
    """Register a new version from version 2's source; seconds to its first prediction."""
    with httpx.Client(base_url=started.url, headers=_HEADERS, timeout=30) as http:
        two = http.get("/api/2.0/mlflow/model-versions/get", params={"name": MODEL, "version": "2"})
        two.raise_for_status()
        source = two.json()["model_version"]
        begun = time.monotonic()
        wanted = {"name": MODEL, "source": source["source"]}
        wanted.update({k: source[k] for k in ("run_id", "model_id") if source.get(k)})
        if source["source"].startswith("models:/m-"):  # a logged model: MLflow asks for its id
            wanted["model_id"] = source["source"].removeprefix("models:/")
        created = http.post("/api/2.0/mlflow/model-versions/create", json=wanted)
        if created.status_code != 200:
            raise RuntimeError(f"registering a new version: {created.status_code} {created.text}")
        version = created.json()["model_version"]["version"]
    _until(lambda: _scores(started.url, version), f"version {version}'s first prediction")
    return time.monotonic() - begun


def _worker_pid(url: str, version: str) -> int | None:
    r = httpx.get(
        f"{url}{_API}/list-versions",
        params={"registered_model_name": MODEL},
        headers=_HEADERS,
        timeout=10,
    )
    for v in r.json().get("endpoint_versions", []):
        if v["endpoint_version_name"] == version and v["state"] == "VERSION_STATE_READY":
            pid = v.get("worker_pid")
            return int(pid) if pid else None
    return None


@contextlib.contextmanager
def _trickle(url: str, ref: str) -> Iterator[dict[str, int]]:
    """Requests one after another on ``ref`` while the block runs: counts of answers."""
    counts = {"ok": 0, "failed": 0}
    done = threading.Event()

    def send() -> None:
        with httpx.Client(headers=_HEADERS, timeout=30) as http:
            while not done.is_set():
                try:
                    r = http.post(f"{url}/model/{MODEL}/{ref}/invocations", json=BODY)
                    counts["ok" if r.status_code == 200 else "failed"] += 1
                except httpx.HTTPError:
                    counts["failed"] += 1
                time.sleep(0.02)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        done.set()
        thread.join(timeout=60)


def killed_replica_replaced(started: StartedRegServe) -> tuple[float, int, int]:
    """SIGKILL version 2's serving replica under a trickle of requests: seconds until another
    replica serves it, requests answered and failed meanwhile."""
    pid = _worker_pid(started.url, "2")
    if pid is None:
        raise RuntimeError("version 2 has no worker pid")
    with _trickle(started.url, "2") as counts:
        time.sleep(0.5)
        begun = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        _until(lambda: _worker_pid(started.url, "2") not in (None, pid), "a new replica")
        took = time.monotonic() - begun
        _until(lambda: _scores(started.url, "2"), "version 2 answering")
        time.sleep(0.5)
    return took, counts["ok"], counts["failed"]


def mlflow_to_first_prediction(registry_url: str, workdir: Path) -> float:
    """``mlflow models serve`` of version 2 from regserve's registry, ``--env-manager local``:
    seconds from the command to its first prediction."""
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry_url,
        "MLFLOW_TRACKING_TOKEN": TOKEN,
        "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [
        str(_BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL}/2",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    log = workdir / "mlflow-serve.log"
    begun = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        def predicted() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited:\n{log.read_text()[-3000:]}")
            r = httpx.post(f"http://127.0.0.1:{port}/invocations", json=BODY, timeout=30)
            return r.status_code == 200

        _until(predicted, "mlflow models serve's first prediction")
        return time.monotonic() - begun
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def import_floor(rounds: int = 3) -> float:
    """Median seconds for a new interpreter to import what the demo's warm process imports
    (``modules_for_flavors`` of its flavors): what a restart after Ctrl-C, which stops every
    process, pays at least before its first prediction, whatever regserve does."""
    from regserve.backends.local.preload import modules_for_flavors
    from regserve.registry.demo import FLAVORS

    code = "import " + ", ".join(modules_for_flavors(FLAVORS))
    times = []
    for _ in range(rounds):
        begun = time.monotonic()
        subprocess.run([str(_BIN / "python"), "-c", code], check=True)
        times.append(time.monotonic() - begun)
    return sorted(times)[rounds // 2]


def measure(env_manager: str, root: Path) -> dict[str, Any]:
    """Every figure of one env manager, in the order of the module's docstring."""
    data_dir = root / f"data-{env_manager}"
    port = _free_port()
    manager = None if env_manager == "virtualenv" else env_manager
    fresh, started = fresh_demo(data_dir, port, manager)
    try:
        new_version = new_version_to_first_prediction(started)
        replaced, answered, failed = killed_replica_replaced(started)
        mlflow = mlflow_to_first_prediction(started.url, root)
        floor = import_floor()
    finally:
        stop(started)
    again, started = restart_demo(data_dir, port, manager)
    stop(started)
    return {
        "env_manager": env_manager,
        "fresh": fresh,
        "new_version": new_version,
        "replica_replaced": replaced,
        "answered_during_kill": answered,
        "failed_during_kill": failed,
        "restart": again,
        "mlflow_models_serve": mlflow,
        "import_floor": floor,
    }


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| env manager | path | seconds to the first prediction | / mlflow models serve |",
        "|---|---|---:|---:|",
    ]
    for r in results:
        mlflow = r["mlflow_models_serve"]
        paths = [
            ("`mlflow models serve` (local env), same registered model", mlflow),
            (
                "fresh `regserve up --demo` (listening at "
                f"{r['fresh']['listening']:.1f} s, registered at {r['fresh']['registered']:.1f} s)",
                r["fresh"]["first prediction"],
            ),
            (
                f"restart after Ctrl-C (listening at {r['restart']['listening']:.1f} s)",
                r["restart"]["first prediction"],
            ),
            (
                "(floor: a new interpreter importing the demo's warm modules, median of 3)",
                r["import_floor"],
            ),
            ("new version registered", r["new_version"]),
            (
                f"killed replica replaced ({r['failed_during_kill']} of "
                f"{r['answered_during_kill'] + r['failed_during_kill']} requests failed)",
                r["replica_replaced"],
            ),
        ]
        for label, seconds in paths:
            rows.append(
                f"| {r['env_manager']} | {label} | {seconds:.2f} | {seconds / mlflow:.2f}x |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-manager", nargs="+", default=["local", "virtualenv"])
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="regserve-bench-start-") as tmp:
        for env_manager in args.env_manager:
            results.append(measure(env_manager, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    end = os.getloadavg()
    print(
        f"\n{os.cpu_count()} CPUs, load average at start {load[0]:.2f}, at the end {end[0]:.2f}\n"
    )
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
