"""The worker's hot path alone: req/s from ``WorkerClient`` to a worker process over its socket,
a one-version worker and a shared worker with one version bound, side by side; then the same
one-version worker reached through the backend's ``ReplicaSet`` (the version's routing target:
replica picking, in-flight counts, retry), with one replica and with two.

Run: ``.venv/bin/python -m bench.worker_path [--worker-src DIR] [--rounds 3]``. ``--worker-src``
runs the worker from another checkout's ``src`` (e.g. ``git archive <commit> src | tar -x -C
/tmp/old``) to compare a change with what it replaces; the client is always this checkout's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from regserve.backends.base import VersionSpec
from regserve.backends.local.client import WorkerClient
from regserve.backends.local.replicas import ReplicaSet
from regserve.sandbox import Isolation
from regserve.settings import Settings
from regserve.worker import wire

ROOT = Path(__file__).resolve().parent.parent
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = json.dumps({"dataframe_records": [ROW]}).encode()
CONCURRENCY, PER_TASK, RUNS = 8, 500, 5


def _save_model(path: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.support.models import save_iris_model

    return save_iris_model(path)


async def _drive(client: WorkerClient | ReplicaSet) -> float:
    async def loop(n: int) -> None:
        for _ in range(n):
            status, _, _ = await client.request("application/json", BODY, 30)
            assert status == 200

    await asyncio.gather(*(loop(100) for _ in range(CONCURRENCY)))  # warm-up
    best = 0.0
    for _ in range(RUNS):
        started = time.perf_counter()
        await asyncio.gather(*(loop(PER_TASK) for _ in range(CONCURRENCY)))
        best = max(best, CONCURRENCY * PER_TASK / (time.perf_counter() - started))
    return best


async def _measure(shared: bool, model: Path, src: Path, workdir: Path) -> float:
    sock = workdir / ("shared.sock" if shared else "solo.sock")
    args = ["--shared"] if shared else ["--model-path", str(model)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "regserve.worker", "--socket", str(sock), *args]
    process = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        control = WorkerClient(str(sock), "worker")
        while True:
            try:
                await control.ping()
                break
            except Exception:
                await asyncio.sleep(0.1)
        client = control
        if shared:
            load: wire.Load = {"version": "1", "model_path": str(model)}
            assert (await control.load(load, 120))["ok"]
            client = WorkerClient(str(sock), "v1", bind="1")
        return await _drive(client)
    finally:
        process.terminate()
        await process.wait()


async def _measure_set(replicas: int, model: Path, workdir: Path) -> float:
    """Through a real ReplicaSet whose replicas are real worker processes (this checkout's)."""
    data_dir = workdir / f"set-{replicas}"
    settings = Settings(data_dir=data_dir)
    spec = VersionSpec("bench", "1", model)
    sandbox = Isolation(settings, data_dir).sandbox_for("bench")
    replica_set = ReplicaSet(
        settings, spec, replicas, 0, list, lambda _event: None, sandbox=sandbox
    )
    replica_set.start()
    try:
        while not replica_set.all_ready():  # noqa: ASYNC110 - a bench's start-up wait
            await asyncio.sleep(0.1)
        return await _drive(replica_set)
    finally:
        await replica_set.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_path", description=__doc__)
    parser.add_argument("--worker-src", type=Path, default=ROOT / "src")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="rs-path-"))
    model = _save_model(workdir / "iris")
    for round_ in range(1, args.rounds + 1):
        for shared in (False, True):
            if shared and not (args.worker_src / "regserve" / "worker" / "shared.py").exists():
                continue
            rps = asyncio.run(_measure(shared, model, args.worker_src, workdir))
            kind = "shared, one version bound" if shared else "one version"
            print(f"round {round_}: {kind:26} {rps:7.0f} req/s (c={CONCURRENCY})", flush=True)
        for replicas in (1, 2):
            rps = asyncio.run(_measure_set(replicas, model, workdir))
            kind = f"ReplicaSet, {replicas} replica{'s' if replicas > 1 else ''}"
            print(f"round {round_}: {kind:26} {rps:7.0f} req/s (c={CONCURRENCY})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
