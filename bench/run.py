"""``make bench``: regserve against ``mlflow models serve`` and a bare ASGI ceiling, in one run.

Starts (a) ``mlflow models serve --env-manager local`` (one per version), (b) ``regserve up``
serving the same model versions, (c) a hello-world ASGI app on the same uvicorn, all on
loopback; drives each with wrk through the same scenarios; prints a table and the ratios;
writes ``bench/results/bench.json`` and ``bench.png`` and refreshes the results section of
``docs/performance.md``. ``--smoke`` runs two short scenarios and writes only the JSON (CI).

Run: ``.venv/bin/python -m bench.run [--seconds 5] [--smoke] [--out DIR] [--no-memory]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.procs import pss_mb
from bench.ray_phase import ray_rows, ray_table, update_ray_docs
from bench.servers import (
    COLUMNS,
    TOKEN,
    Server,
    log_bench_model,
    record_pids,
    served_model_dir,
    start_ceiling,
    start_mlflow,
    start_regserve,
    wait_until,
)
from bench.wrk import Load, WrkResult, require_wrk, run_wrk

MODEL = "bench-iris"
MEMORY_MODEL = "bench-memory"
API = "/api/2.0/preview/mlflow/endpoints"
ROW = [5.1, 3.5, 1.4, 0.2]
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scenario:
    name: str
    content_type: str
    body: bytes
    connections: int
    two_versions: bool = False
    capture: bool = False
    """regserve only, with the model's inference table on at sample 1.0 (every request
    captured): its cost against the same scenario with capture off."""


def _records(rows: int) -> bytes:
    return json.dumps({"dataframe_records": [dict(zip(COLUMNS, ROW, strict=True))] * rows}).encode()


def _split(rows: int) -> bytes:
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW] * rows}}).encode()


def scenarios(smoke: bool) -> list[Scenario]:
    json_ct = "application/json"
    if smoke:
        return [
            Scenario("1-row records c=8", json_ct, _records(1), 8),
            Scenario("2 versions, 1-row c=8", json_ct, _records(1), 8, two_versions=True),
        ]
    csv = (",".join(COLUMNS) + "\n" + ",".join(map(str, ROW)) + "\n").encode()
    return [
        *(Scenario(f"1-row records c={c}", json_ct, _records(1), c) for c in (1, 8, 32, 128)),
        Scenario("256-row split c=8", json_ct, _split(256), 8),
        Scenario("1-row CSV c=32", "text/csv", csv, 32),
        Scenario("2 versions, 1-row c=32", json_ct, _records(1), 32, two_versions=True),
        CAPTURE,
    ]


CAPTURE = Scenario(
    "1-row records c=32, inference table on", "application/json", _records(1), 32, capture=True
)
CAPTURE_BASE = "1-row records c=32"
"""The scenario :data:`CAPTURE` is compared with (the same load, capture off)."""


class Targets:
    """The servers under test and the URL paths of each version on each."""

    def __init__(self, regserve: Server, mlflow: list[Server], ceiling: Server) -> None:
        self.regserve = regserve
        self.mlflow = mlflow
        self.ceiling = ceiling

    def loads(self, target: str, scenario: Scenario) -> list[tuple[str, Load]]:
        """(base URL, load) per wrk process; two versions are driven by two wrk at once."""
        headers: tuple[tuple[str, str], ...] = (("Content-Type", scenario.content_type),)
        versions = ["1", "2"] if scenario.two_versions else ["1"]
        if target == "regserve":
            auth = (("Authorization", f"Bearer {TOKEN}"),)
            return [
                (
                    self.regserve.url,
                    Load((f"/model/{MODEL}/{v}/invocations",), scenario.body, headers + auth),
                )
                for v in versions
            ]
        if target == "mlflow":
            return [
                (self.mlflow[i].url, Load(("/invocations",), scenario.body, headers))
                for i in range(len(versions))
            ]
        return [(self.ceiling.url, Load(("/",), scenario.body, headers)) for _ in versions]


def drive(targets: Targets, target: str, scenario: Scenario, seconds: float) -> WrkResult:
    loads = targets.loads(target, scenario)
    share = max(1, scenario.connections // len(loads))
    with ThreadPoolExecutor(len(loads)) as pool:
        results = list(pool.map(lambda tl: run_wrk(tl[0], tl[1], share, seconds), loads))
    return WrkResult(
        requests=sum(r.requests for r in results),
        seconds=max(r.seconds for r in results),
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
    )


def measure(
    targets: Targets,
    scenario: Scenario,
    seconds: float,
    names: tuple[str, ...] = ("mlflow", "regserve", "ceiling"),
) -> list[dict[str, Any]]:
    """A row per target ``names`` of ``scenario`` (regserve alone, capture on, for
    :data:`CAPTURE`)."""
    rows = []
    if scenario.capture:
        set_capture(targets.regserve, True)
    try:
        for target in ("regserve",) if scenario.capture else names:
            outcome = drive(targets, target, scenario, seconds)
            rows.append(
                {
                    "scenario": scenario.name,
                    "target": target,
                    **asdict(outcome),
                    "rps": round(outcome.rps, 1),
                }
            )
            print(
                f"  {scenario.name:26} {target:9} {outcome.rps:9.1f} req/s "
                f"p50 {outcome.p50_ms:7.2f} ms p99 {outcome.p99_ms:7.2f} ms "
                f"errors {outcome.non2xx + outcome.socket_errors}",
                flush=True,
            )
    finally:
        if scenario.capture:
            set_capture(targets.regserve, False)
    return rows


# -- regserve set-up ----------------------------------------------------------------------------


def _http(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    )


def _ready_versions(http: httpx.Client, name: str) -> set[str]:
    r = http.get(f"{API}/list-versions", params={"registered_model_name": name})
    if r.status_code != 200:
        return set()
    return {
        v["endpoint_version_name"]
        for v in r.json()["endpoint_versions"]
        if v["state"] == "VERSION_STATE_READY"
    }


def _use_registry(server: Server) -> None:
    import mlflow

    os.environ.update(MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_TOKEN=TOKEN)
    mlflow.set_tracking_uri(server.url)


def serve_bench_model(server: Server) -> None:
    """Register two versions of the bench model and wait until regserve serves both."""
    _use_registry(server)
    log_bench_model(MODEL, 1.0)
    log_bench_model(MODEL, 0.5)
    with _http(server) as http:
        http.post(f"{API}/enable", json={"registered_model_name": MODEL}).raise_for_status()
        wait_until(lambda: _ready_versions(http, MODEL) >= {"1", "2"}, 300, "versions READY")


def set_capture(server: Server, on: bool) -> None:
    """The bench model's inference table on (every request) or off (no tags)."""
    tags = [{"key": "regserve.inference_table", "value": "on"}] if on else []
    body = {
        "registered_model_name": MODEL,
        "desired_cluster_config": {"node_type_id": "local-default", "tags": tags},
    }
    with _http(server) as http:
        http.put(f"{API}/update-cluster-config", json=body).raise_for_status()


# -- memory -------------------------------------------------------------------------------------


def _regserve_memory(server: Server) -> dict[str, Any]:
    """The main process, the serving workers, the templates they are forked from (and the
    templates' standbys) and the warm processes the templates are forked from, told apart by
    their records (a forked process has its parent's command line)."""
    rss = server.rss()
    main = rss[server.process.pid][1]
    worker_pids = [pid for pid, (cmd, _) in rss.items() if "regserve.worker" in cmd]
    templates = record_pids(server, "*.tpl") | record_pids(server, "*.tpl.standby")
    warm = record_pids(server, "*.warm")
    serving = [pid for pid in worker_pids if pid not in templates and pid not in warm]
    workers = [rss[pid][1] for pid in worker_pids]
    pss = [pss_mb(pid) for pid in worker_pids]
    return {
        "main_mb": round(main, 1),
        "workers": len(serving),
        "templates": len([pid for pid in worker_pids if pid in templates]),
        "warm": len([pid for pid in worker_pids if pid in warm]),
        "workers_mb": round(sum(workers), 1),
        "per_worker_mb": round(sum(workers) / len(serving), 1) if serving else 0.0,
        "total_mb": round(main + sum(workers), 1),
        "workers_pss_mb": round(sum(pss), 1),
        "total_pss_mb": round(pss_mb(server.process.pid) + sum(pss), 1),
    }


def _mlflow_memory(servers: list[Server]) -> dict[str, Any]:
    """The uvicorn process(es) that serve, and the ``mlflow`` launcher that waits on them."""
    serving = launcher = 0.0
    for server in servers:
        for pid, (_, mb) in server.rss().items():
            if pid == server.process.pid:
                launcher += mb
            else:
                serving += mb
    return {
        "servers": len(servers),
        "serving_mb": round(serving, 1),
        "launcher_mb": round(launcher, 1),
        "total_mb": round(serving + launcher, 1),
    }


def memory_scaling(server: Server, counts: list[int]) -> list[dict[str, Any]]:
    """RSS with 1, 5, 20 ... versions served (of another model; the bench model is disabled)."""
    from mlflow import MlflowClient

    rows: list[dict[str, Any]] = []
    with _http(server) as http:
        http.post(f"{API}/disable", json={"registered_model_name": MODEL}).raise_for_status()
        wait_until(lambda: _regserve_memory(server)["workers"] == 0, 120, "workers stopped")
        _, uri, run_id, model_id = log_bench_model(MEMORY_MODEL)
        client = MlflowClient()
        registered = 1
        http.post(f"{API}/enable", json={"registered_model_name": MEMORY_MODEL})
        for count in counts:
            while registered < count:
                client.create_model_version(MEMORY_MODEL, uri, run_id, model_id=model_id)
                registered += 1
            wait_until(
                lambda c=count: len(_ready_versions(http, MEMORY_MODEL)) >= c,  # type: ignore[misc]
                60 + 15 * count,
                f"{count} versions READY",
            )
            time.sleep(2)  # let freshly started workers settle
            rows.append({"versions": count, **_regserve_memory(server)})
            print(f"  memory with {count} versions: {rows[-1]}", flush=True)
    return rows


# -- the run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each scenario")
    parser.add_argument("--smoke", action="store_true", help="seconds in all, for CI")
    parser.add_argument(
        "--out", type=Path, help="results directory (bench/results; a temporary one for --smoke)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the 1/5/20 versions run")
    parser.add_argument("--memory-versions", default="1,5,20")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray Serve rows")
    parser.add_argument(
        "--ray-only",
        action="store_true",
        help="only the Ray rows (regserve local, regserve --backend ray, plain Ray Serve); "
        "writes bench-ray.json and the Ray section of docs/performance.md",
    )
    args = parser.parse_args(argv)
    require_wrk()
    seconds = 1.0 if args.smoke else args.seconds
    if args.out is None:
        smoke_dir = Path(tempfile.gettempdir()) / "regserve-bench-smoke"
        args.out = smoke_dir if args.smoke else ROOT / "bench" / "results"
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="regserve-bench-"))
    started: list[Server] = []
    try:
        if args.ray_only:
            return _run_ray_only(args, seconds, workdir, started)
        result = _run(args, seconds, workdir, started)
    finally:
        for server in reversed(started):
            server.stop()
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(report.table(result))
    if not args.smoke:
        report.chart(result, args.out / "bench.png")
        report.update_docs(result, ROOT / "docs" / "performance.md")
        if any(r["target"] == "regserve-ray" for r in result["results"]):
            update_ray_docs(result, ROOT / "docs" / "performance.md")
    print(f"results: {args.out / 'bench.json'}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _run(
    args: argparse.Namespace, seconds: float, workdir: Path, started: list[Server]
) -> dict[str, Any]:
    load_at_start = os.getloadavg()
    print(f"starting servers (logs in {workdir})", flush=True)
    regserve = start_regserve(workdir / "data", workdir)
    started.append(regserve)
    serve_bench_model(regserve)
    mlflow_servers = [  # what regserve serves, for mlflow too
        start_mlflow(served_model_dir(workdir / "data", MODEL, v), workdir, f"v{v}")
        for v in ("1", "2")
    ]
    started += mlflow_servers
    ceiling = start_ceiling(workdir)
    started.append(ceiling)
    targets = Targets(regserve, mlflow_servers, ceiling)
    warm = Scenario("warm-up", "application/json", _records(1), 8, two_versions=True)
    for target in ("mlflow", "regserve", "ceiling"):
        drive(targets, target, warm, 1.0)
    rows: list[dict[str, Any]] = []
    for scenario in scenarios(args.smoke):
        rows += measure(targets, scenario, seconds)
    if not (args.no_ray or args.smoke):  # CI's smoke run stays short: --ray-only --smoke
        rows += ray_rows(regserve, workdir, MODEL, serve_bench_model, seconds, args.smoke)
        _use_registry(regserve)  # back to the first server's registry
    memory = {
        "regserve_two_versions": _regserve_memory(regserve),
        "mlflow_two_versions": _mlflow_memory(mlflow_servers),
        "mlflow_one_version": _mlflow_memory(mlflow_servers[:1]),
        "ceiling_mb": round(sum(mb for _, mb in ceiling.rss().values()), 1),
    }
    scaling = []
    if not (args.smoke or args.no_memory):
        counts = [int(c) for c in args.memory_versions.split(",")]
        scaling = memory_scaling(regserve, counts)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "python": platform.python_version(),
        },
        "smoke": args.smoke,
        "seconds_per_scenario": seconds,
        "results": rows,
        "memory": memory,
        "memory_scaling": scaling,
        "ratios": report.ratios(rows),
        "capture_cost": report.capture_cost(rows, CAPTURE_BASE, CAPTURE.name),
    }


def _run_ray_only(
    args: argparse.Namespace, seconds: float, workdir: Path, started: list[Server]
) -> int:
    load_at_start = os.getloadavg()
    regserve = start_regserve(workdir / "data", workdir)
    started.append(regserve)
    serve_bench_model(regserve)
    rows = ray_rows(regserve, workdir, MODEL, serve_bench_model, seconds, args.smoke)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "python": platform.python_version(),
        },
        "seconds_per_scenario": seconds,
        "results": rows,
    }
    (args.out / "bench-ray.json").write_text(json.dumps(result, indent=2) + "\n")
    print(ray_table(rows))
    if not args.smoke:
        update_ray_docs(result, ROOT / "docs" / "performance.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
