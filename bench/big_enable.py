"""A big enable (issue 20, item 0): one model with N versions (default 40) enabled at once on a
running ``regserve up --env-manager local``; seconds from the enable call to the first version
READY, to the version an alias points at READY, and to all READY; the load average's peak
meanwhile; then a sweep scoring every version (each must answer 200).

The model is a small scikit-learn iris model, logged once through the MLflow API of the running
regserve (its hosted registry); versions 2..N are registered from the same source. Version N/2
gets the alias ``champion``: with the start queue it starts among the first.

Run: ``nice -n 15 .venv/bin/python -m bench.big_enable --versions 40`` (add
``--parallelism K`` to set ``REGSERVE_WORKER_START_PARALLELISM``; unset: the server's default).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import TOKEN, Server, log_bench_model, start_regserve

MODEL = "big-enable"
ALIAS = "champion"
API = "/api/2.0/preview/mlflow/endpoints"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
_READY = "VERSION_STATE_READY"


def register(server: Server, count: int) -> str:
    """``count`` versions of the bench model in regserve's hosted registry; the aliased one."""
    import mlflow
    from mlflow import MlflowClient

    os.environ.update(MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_TOKEN=TOKEN)
    mlflow.set_experiment("big-enable")
    _, _, _, model_id = log_bench_model(MODEL)
    client = MlflowClient()
    first = client.get_model_version(MODEL, "1")
    for _ in range(count - 1):
        client.create_model_version(
            MODEL, source=first.source, run_id=first.run_id, model_id=model_id
        )
    aliased = str(max(1, count // 2))
    client.set_registered_model_alias(MODEL, ALIAS, aliased)
    return aliased


def _states(http: httpx.Client) -> dict[str, str]:
    r = http.get(f"{API}/list-versions", params={"registered_model_name": MODEL})
    if r.status_code != 200:
        return {}
    return {v["endpoint_version_name"]: v["state"] for v in r.json()["endpoint_versions"]}


def watch(http: httpx.Client, count: int, aliased: str, timeout: float) -> dict[str, Any]:
    """Enable, then poll until every version is READY: the times and the load's peak."""
    started = time.monotonic()
    r = http.post(f"{API}/enable", json={"registered_model_name": MODEL})
    r.raise_for_status()
    first = alias = None
    peak = os.getloadavg()[0]
    launching = 0
    while time.monotonic() - started < timeout:
        states = _states(http)
        ready = [v for v, state in states.items() if state == _READY]
        now = time.monotonic() - started
        peak = max(peak, os.getloadavg()[0])
        launching = max(launching, sum(s == "VERSION_STATE_LAUNCHING" for s in states.values()))
        if ready and first is None:
            first = now
        if aliased in ready and alias is None:
            alias = now
        if len(ready) == count:
            return {
                "first": first,
                "alias": alias,
                "all": now,
                "peak_load": peak,
                "launching": launching,
            }
        time.sleep(0.5)
    raise TimeoutError(f"not all {count} versions READY after {timeout:g} s: {_states(http)}")


def sweep(http: httpx.Client, count: int) -> int:
    """Score every version once: how many answered 200."""
    body = {"dataframe_records": [ROW]}
    return sum(
        http.post(f"/model/{MODEL}/{v}/invocations", json=body).status_code == 200
        for v in range(1, count + 1)
    )


def events(http: httpx.Client) -> dict[str, int]:
    r = http.get(f"{API}/get-event-history", params={"registered_model_name": MODEL})
    r.raise_for_status()
    counts: dict[str, int] = {}
    for event in r.json()["events"]:
        counts[event["event_type"]] = counts.get(event["event_type"], 0) + 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=40)
    parser.add_argument("--parallelism", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="rsbe-"))
    settings = {"REGSERVE_ENV_MANAGER": "local"}
    if args.parallelism is not None:
        settings["REGSERVE_WORKER_START_PARALLELISM"] = str(args.parallelism)
    server = start_regserve(workdir / "data", workdir, settings)
    try:
        aliased = register(server, args.versions)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            before = os.getloadavg()[0]
            times = watch(http, args.versions, aliased, args.timeout)
            answered = sweep(http, args.versions)
            counts = events(http)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"versions: {args.versions}; start parallelism: {args.parallelism or 'default'}")
    print(
        f"load average (1 min) before enable: {before:.2f}; peak until all READY: "
        f"{times['peak_load']:.2f}"
    )
    print(
        f"first version READY: {times['first']:.1f} s; v{aliased} (@{ALIAS}) READY: "
        f"{times['alias']:.1f} s; all {args.versions} READY: {times['all']:.1f} s"
    )
    print(f"most versions LAUNCHING at once (polled every 0.5 s): {times['launching']}")
    print(f"sweep: {answered} of {args.versions} versions answered 200")
    print("events: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
