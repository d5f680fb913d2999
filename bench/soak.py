"""``make soak``: steady load on a model with two versions while faults keep happening.

Starts ``regserve up`` (``--env-manager local``, its own data dir, a free port on loopback),
registers two versions of a small iris model (version 1 in Production, version 2 in Staging,
the alias ``champion`` on version 1), enables serving with the cluster tag
``regserve.replicas=2``, and waits until both versions are READY. Then, for ``--duration``
seconds, ``--concurrency`` asyncio clients score one row after another against
``/model/M/1``, ``/model/M/2``, ``/model/M/Production`` and ``/model/M/champion`` while:

- every ``--kill-every`` seconds a random worker process (a replica, the template or its
  standby, found by the records regserve keeps; one time in three two at once: both replicas,
  or template and standby) of a version whose every replica is READY gets ``kill -9``; the
  next kill comes that long after the version has every replica READY again;
- every ``--move-every`` seconds the Production stage and the ``champion`` alias move to the
  other version;
- at 25% and 65% of the run, ``update-cluster-config`` switches the node type and a tag;
- at 45% (and 85% with ``--restarts 2``) the main process restarts: ``kill -HUP`` when its
  ``/health`` says it restarts keeping its workers, else SIGTERM and ``regserve up`` again.

It reports requests sent, failed (by cause: status code or connection error), the success
ratio (overall and outside the restart windows), misrouted answers (an ``X-Model-Version``
that the ref did not point at from ``--grace`` seconds before the request until its answer),
and how long each killed worker's version took to have every replica READY again.
``--no-faults`` runs the load alone. A markdown table by default, ``--json`` for machines.

Run: ``.venv/bin/python -m bench.soak [--duration 180] [--json] [--no-faults]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.servers import COLUMNS, TOKEN, log_bench_model, start_regserve
from bench.soak_faults import API, Cluster, restart_mode
from bench.soak_load import Timeline, run_load
from bench.soak_report import summarize, table

MODEL = "soak-iris"
ROW = [5.1, 3.5, 1.4, 0.2]
BODY = json.dumps({"dataframe_records": [dict(zip(COLUMNS, ROW, strict=True))]}).encode()
REPLICAS = {"regserve.replicas": "2"}
SETTINGS = {
    "REGSERVE_ENV_MANAGER": "local",
    # Passed through: e.g. REGSERVE_UNAVAILABLE_WAIT=0 make soak (answer 503 at once while
    # every replica of a version restarts, instead of holding requests: the default).
    **{k: v for k, v in os.environ.items() if k == "REGSERVE_UNAVAILABLE_WAIT"},
}


def set_up(workdir: Path) -> Cluster:
    """regserve up, two versions registered and served, refs in their first places."""
    data_dir = workdir / "data"
    server = start_regserve(data_dir, workdir, SETTINGS, tag="-soak")
    import mlflow
    from mlflow import MlflowClient

    os.environ.update(MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_TOKEN=TOKEN)
    mlflow.set_tracking_uri(server.url)
    log_bench_model(MODEL, 1.0)
    log_bench_model(MODEL, 0.5)
    client = MlflowClient()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.transition_model_version_stage(MODEL, "1", "Production")
        client.transition_model_version_stage(MODEL, "2", "Staging")
    client.set_registered_model_alias(MODEL, "champion", "1")
    timeline = Timeline()
    timeline.point("Production", {"1"})
    timeline.point("champion", {"1"})
    cluster = Cluster(server, data_dir, workdir, SETTINGS, MODEL, ("1", "2"), timeline, BODY)
    with cluster.http() as http:
        http.post(f"{API}/enable", json={"registered_model_name": MODEL}).raise_for_status()
    cluster.reconfigure("local-default", REPLICAS)
    cluster.wait_ready()
    return cluster


async def _every(
    seconds: float, stop: asyncio.Event, action: Callable[[], Awaitable[None]]
) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except asyncio.TimeoutError:
            await action()


async def _kills(cluster: Cluster, every: float, stop: asyncio.Event, found: list[Any]) -> None:
    rng = random.Random(7)

    async def kill() -> None:
        done = await asyncio.to_thread(cluster.kill_worker, rng)
        if done is not None:
            found.append(done)

    await _every(every, stop, kill)


async def _schedule(
    cluster: Cluster, args: argparse.Namespace, stop: asyncio.Event
) -> dict[str, int]:
    """Stage moves, reconfigurations and restarts, one at a time, at their moments."""
    start = time.monotonic()
    plan = [(0.25, "config"), (0.65, "config")]
    plan += [(t, "restart") for t in (0.45, 0.85)[: args.restarts]]
    plan = sorted(plan + [(t, "move") for t in _moves(args.duration, args.move_every)])
    done = {"move": 0, "config": 0, "restart": 0, "errors": 0}
    mode = args.restart if args.restart != "auto" else await _detect(cluster)
    for fraction, action in plan:
        wait = start + fraction * args.duration - time.monotonic()
        if stop.is_set() or (wait > 0 and await _stopped(stop, wait)):
            break
        try:
            await _act(cluster, action, done["config"], mode)
        except Exception as error:  # a fault that could not be done is reported, not fatal
            print(f"{action} failed: {error!r}", file=sys.stderr, flush=True)
            done["errors"] += 1
            continue
        done[action] += 1
    return done


async def _act(cluster: Cluster, action: str, configs: int, mode: str) -> None:
    if action == "move":
        await asyncio.to_thread(cluster.move_refs)
    elif action == "config":
        node_type = "local-small" if configs % 2 == 0 else "local-default"
        tags = {**REPLICAS, "soak.round": str(configs)}
        await asyncio.to_thread(cluster.reconfigure, node_type, tags)
    else:
        await asyncio.to_thread(cluster.restart, mode)


def _moves(duration: float, every: float) -> list[float]:
    count = int(duration // every)
    return [i * every / duration for i in range(1, count + 1) if i * every < duration - 5]


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


async def _detect(cluster: Cluster) -> str:
    with cluster.http() as http:
        health = await asyncio.to_thread(http.get, "/health")
    return restart_mode(health.json())


async def soak(cluster: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    paths = {
        ref: f"/model/{MODEL}/{ref}/invocations" for ref in ("1", "2", "Production", "champion")
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    load = asyncio.create_task(
        run_load(cluster.server.url, headers, paths, BODY, args.concurrency, stop)
    )
    kills: list[Any] = []
    faults: list[asyncio.Task[Any]] = []
    if args.faults:
        faults = [
            asyncio.create_task(_kills(cluster, args.kill_every, stop, kills)),
            asyncio.create_task(_schedule(cluster, args, stop)),
        ]
    started = time.monotonic()
    await asyncio.sleep(args.duration)
    stop.set()
    outcomes = await load
    seconds = time.monotonic() - started
    results = await asyncio.gather(*faults)  # a restart under way is waited for
    done = results[1] if results else {}
    report = summarize(outcomes, cluster, kills, done, seconds, args.concurrency, args.grace)
    return report | {"load_average_1m_end": round(os.getloadavg()[0], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=180, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=4)
    parser.add_argument("--move-every", type=float, default=20)
    parser.add_argument("--restarts", type=int, choices=(0, 1, 2), default=1)
    parser.add_argument("--restart", choices=("auto", "hup", "term"), default="auto")
    parser.add_argument("--grace", type=float, default=15, help="routing lag allowed, seconds")
    parser.add_argument("--no-faults", dest="faults", action="store_false")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="regserve-soak-"))
    print(f"work dir (regserve's log): {workdir}", file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(sys.stderr):  # MLflow prints run links; stdout is the report
        cluster = set_up(workdir)
    try:
        report = asyncio.run(soak(cluster, args))
    finally:
        cluster.server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
