"""Density (issue 20): ``--models`` x ``--versions`` served versions on one
``regserve up --env-manager local`` with the defaults plus a short idle timeout and a memory
budget; how long until all are servable, whether all are (a sweep: every URL answers 200), the
total memory (PSS of regserve and every worker), a hot version's c=32 throughput against the same
load on a regserve serving that one version only (as ``make bench`` does), and the first request
to an idle version (p50 / p99).

The versions are registered cheaply: ``--logged`` small scikit-learn iris models are logged
through the MLflow API of the running regserve (its hosted registry), and every other version
is registered from one of their sources (``create_model_version``), as ``bench/big_enable.py``
does. Every model is enabled at once; "servable" is READY in ``list-versions`` (an idle
version is READY: its next request loads it).

Run: ``nice -n 15 .venv/bin/python -m bench.density --models 10 --versions 10`` (``make
bench-density`` runs the issue's 50 x 20 = 1,000 versions, ``DENSITY_ARGS`` to change that).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.procs import pss_mb
from bench.servers import TOKEN, Server, log_bench_model, start_regserve, wait_until
from bench.wrk import Load, WrkResult, require_wrk, run_wrk

API = "/api/2.0/preview/mlflow/endpoints"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = {"dataframe_records": [ROW]}
_READY = "VERSION_STATE_READY"


def model_names(count: int) -> list[str]:
    return [f"density-{i:03d}" for i in range(count)]


def register(server: Server, names: list[str], versions: int, logged: int) -> float:
    """Every model with ``versions`` versions; the seconds it took."""
    import mlflow
    from mlflow import MlflowClient

    started = time.monotonic()
    os.environ.update(MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_TOKEN=TOKEN)
    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment("density")
    client = MlflowClient()
    sources = []
    for i, name in enumerate(names[:logged]):
        _, _, run_id, model_id = log_bench_model(name, c=1.0 / (i + 1))
        sources.append((client.get_model_version(name, "1").source, run_id, model_id))
    for i, name in enumerate(names):
        source, run_id, model_id = sources[i % len(sources)]
        if i >= logged:
            client.create_registered_model(name)
        for _ in range(versions - (1 if i < logged else 0)):
            client.create_model_version(name, source=source, run_id=run_id, model_id=model_id)
    return time.monotonic() - started


def versions_of(http: httpx.Client, name: str) -> list[dict[str, Any]]:
    r = http.get(f"{API}/list-versions", params={"registered_model_name": name})
    return list(r.json()["endpoint_versions"]) if r.status_code == 200 else []


def enable_all(http: httpx.Client, names: list[str], each: int, timeout: float) -> dict[str, Any]:
    """Enable every model, then poll until every version is READY: seconds, the load's peak."""
    started = time.monotonic()
    for name in names:
        http.post(f"{API}/enable", json={"registered_model_name": name}).raise_for_status()
    peak, ready, told = os.getloadavg()[0], 0, 0.0
    while time.monotonic() - started < timeout:
        listed = [v for name in names for v in versions_of(http, name)]
        ready = sum(v["state"] == _READY for v in listed)
        peak = max(peak, os.getloadavg()[0])
        elapsed = time.monotonic() - started
        if ready == len(names) * each:
            return {"all_ready_s": elapsed, "peak_load": peak}
        if elapsed - told >= 30:  # progress, for a run that does not finish
            told = elapsed
            loaded = sum(v.get("loaded") is True for v in listed)
            load = os.getloadavg()[0]
            print(f"{elapsed:.0f} s: {ready} READY, {loaded} loaded, load {load:.1f}", flush=True)
        time.sleep(2.0)
    raise TimeoutError(f"{ready} of {len(names) * each} versions READY after {timeout:g} s")


def sweep(http: httpx.Client, names: list[str], each: int) -> tuple[int, float]:
    """Score every version's URL once: how many answered 200, and the seconds it took."""
    started = time.monotonic()
    ok = sum(
        http.post(f"/model/{name}/{v}/invocations", json=BODY).status_code == 200
        for name in names
        for v in range(1, each + 1)
    )
    return ok, time.monotonic() - started


def memory(server: Server, http: httpx.Client) -> dict[str, float]:
    """PSS of regserve and all its workers (MiB), and what its /metrics says."""
    tree = server.tree()
    figures = {"total_pss_mb": sum(pss_mb(pid) for pid in tree), "processes": float(len(tree))}
    figures["main_pss_mb"] = pss_mb(server.process.pid)
    for line in http.get("/metrics").text.splitlines():
        for name in ("regserve_loaded_memory_bytes", "regserve_warm_memory_bytes"):
            if line.startswith(name + " "):
                figures[name] = float(line.split()[1]) / 2**20
        if line.startswith("regserve_loaded_versions "):
            figures["loaded_versions"] = float(line.split()[1])
    return figures


def hot(server: Server, name: str, seconds: float) -> WrkResult:
    """c=32 on one version for ``seconds`` (after a warm-up), as ``make bench`` drives it."""
    import json

    headers = (("Content-Type", "application/json"), ("Authorization", f"Bearer {TOKEN}"))
    load = Load((f"/model/{name}/1/invocations",), json.dumps(BODY).encode(), headers)
    run_wrk(server.url, load, 32, 2)
    return run_wrk(server.url, load, 32, seconds)


def idle_wakes(http: httpx.Client, names: list[str], count: int) -> list[float]:
    """Time one request to each of up to ``count`` idle versions (spread over the models)."""
    took: list[float] = []
    each = max(1, -(-count // len(names)))
    for name in names:
        idle = [v for v in versions_of(http, name) if v.get("loaded") is False]
        for version in idle[:each]:
            started = time.perf_counter()
            url = f"/model/{name}/{version['endpoint_version_name']}/invocations"
            r = http.post(url, json=BODY)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code} {r.text}")
            took.append(time.perf_counter() - started)
        if len(took) >= count:
            break
    return took


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


@contextmanager
def regserve(settings: dict[str, str]) -> Iterator[tuple[Server, httpx.Client]]:
    workdir = Path(tempfile.mkdtemp(prefix="rsden-"))
    server = start_regserve(
        workdir / "data", workdir, {"REGSERVE_ENV_MANAGER": "local", **settings}
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
            yield server, http
    finally:
        server.stop()
        log = Path(tempfile.gettempdir()) / f"density-{workdir.name}.log"
        shutil.copy(server.log, log)  # the events and evictions, for a look afterwards
        print(f"regserve's log: {log}", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)


def dense(args: argparse.Namespace) -> dict[str, Any]:
    names = model_names(args.models)
    settings = {
        "REGSERVE_MEMORY_BUDGET": args.budget,
        "REGSERVE_IDLE_TIMEOUT": f"{args.idle_timeout:g}",
    }
    with regserve(settings) as (server, http):
        result: dict[str, Any] = {"register_s": register(server, names, args.versions, args.logged)}
        result["load_before"] = os.getloadavg()[0]
        result |= enable_all(http, names, args.versions, args.timeout)
        result["memory_ready"] = memory(server, http)
        result["sweep_ok"], result["sweep_s"] = sweep(http, names, args.versions)
        time.sleep(args.settle)  # the budget catches up with the sweep's wakes
        result["memory_settled"] = memory(server, http)
        result["hot"] = hot(server, names[0], args.seconds)
        result["wakes"] = idle_wakes(http, names, args.wakes)
        result["load_end"] = os.getloadavg()[0]
    return result


def alone(args: argparse.Namespace) -> WrkResult:
    """The same c=32 load on a regserve serving one version only."""
    with regserve({}) as (server, http):
        register(server, model_names(1), 1, 1)
        http.post(f"{API}/enable", json={"registered_model_name": "density-000"})
        wait_until(
            lambda: any(v["state"] == _READY for v in versions_of(http, "density-000")),
            300,
            "the one version READY",
        )
        return hot(server, "density-000", args.seconds)


def report(args: argparse.Namespace, result: dict[str, Any], baseline: WrkResult | None) -> str:
    total = args.models * args.versions
    wakes = [w * 1000 for w in result["wakes"]]
    ready, settled = result["memory_ready"], result["memory_settled"]
    hot_run: WrkResult = result["hot"]
    lines = [
        f"{args.models} models x {args.versions} versions = {total}; budget {args.budget}, "
        f"idle timeout {args.idle_timeout:g} s; load average (1 min) before enable "
        f"{result['load_before']:.2f}, peak until all READY {result['peak_load']:.2f}, at the end "
        f"{result['load_end']:.2f}",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| registering the {total} versions, s | {result['register_s']:.0f} |",
        f"| from the first `enable` to all {total} READY, s | {result['all_ready_s']:.0f} |",
        f"| sweep: versions that answered 200 | {result['sweep_ok']} of {total} |",
        f"| sweep: seconds for one request to each | {result['sweep_s']:.0f} |",
    ]
    for label, figures in (("all READY", ready), (f"{args.settle:g} s after the sweep", settled)):
        lines += [
            f"| PSS of regserve and all its workers at {label}, MiB | "
            f"{figures['total_pss_mb']:.0f} ({figures['processes']:.0f} processes) |",
            f"| of which: regserve's own process / loaded versions (/metrics) / warm "
            f"processes, MiB | {figures['main_pss_mb']:.0f} / "
            f"{figures.get('regserve_loaded_memory_bytes', 0):.0f} / "
            f"{figures.get('regserve_warm_memory_bytes', 0):.0f} |",
            f"| versions loaded at {label} | {figures.get('loaded_versions', 0):.0f} |",
        ]
    lines.append(
        f"| hot version, 1-row records c=32: req/s, p99 ms | {hot_run.rps:.0f}, "
        f"{hot_run.p99_ms:.1f} (non-2xx {hot_run.non2xx}) |"
    )
    if baseline is not None:
        lines.append(
            f"| the same on a regserve serving that version only: req/s, p99 ms | "
            f"{baseline.rps:.0f}, {baseline.p99_ms:.1f} |"
        )
    if wakes:
        lines.append(
            f"| first request to an idle version ({len(wakes)}), p50 / p99 / mean ms | "
            f"{percentile(wakes, 0.5):.0f} / {percentile(wakes, 0.99):.0f} / "
            f"{statistics.mean(wakes):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--logged", type=int, default=3, help="distinct logged models")
    parser.add_argument("--budget", default="3GiB", help="REGSERVE_MEMORY_BUDGET")
    parser.add_argument("--idle-timeout", type=float, default=120.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    parser.add_argument("--wakes", type=int, default=20)
    parser.add_argument("--settle", type=float, default=40.0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    require_wrk()
    result = dense(args)
    baseline = None if args.no_baseline else alone(args)
    print(report(args, result, baseline))


if __name__ == "__main__":
    main()
