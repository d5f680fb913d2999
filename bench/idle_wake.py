"""The first request to an idle version (issue 20, item 2): a small scikit-learn iris model
served by a running ``regserve up --env-manager local`` idles after ``--idle-after`` seconds
without a request (the cluster tag ``regserve.idle_timeout``); each round waits until the
version is idle (its workers stopped: a ``VERSION_IDLE`` event), then times one scoring request
over HTTP, which wakes it (its template forked from the model's warm process, the model
loaded, a replica forked) and is answered. Prints p50 / p99 / max over ``--wakes`` rounds, and
the wake times the ``VERSION_WOKEN`` events give.

Run: ``nice -n 15 .venv/bin/python -m bench.idle_wake --wakes 20``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.servers import TOKEN, Server, log_bench_model, start_regserve, wait_until

MODEL = "idle-wake"
API = "/api/2.0/preview/mlflow/endpoints"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
_READY = "VERSION_STATE_READY"
_TOOK = re.compile(r"took (\d+\.\d+) s")


def register(server: Server) -> None:
    import mlflow

    os.environ.update(MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_TOKEN=TOKEN)
    mlflow.set_experiment("idle-wake")
    log_bench_model(MODEL)


def events(http: httpx.Client, kind: str) -> list[str]:
    r = http.get(
        f"{API}/get-event-history", params={"registered_model_name": MODEL, "max_events": 1000}
    )
    r.raise_for_status()
    return [e["message"] for e in r.json()["events"] if e["event_type"] == kind]


def serve(http: httpx.Client, idle_after: float) -> None:
    """Enable serving with the idle timeout, and wait until version 1 is READY."""
    config = {
        "node_type_id": "local-default",
        "tags": [{"key": "regserve.idle_timeout", "value": f"{idle_after:g}"}],
    }
    body = {"registered_model_name": MODEL}
    http.post(f"{API}/enable", json=body).raise_for_status()
    update = {**body, "desired_cluster_config": config}
    http.put(f"{API}/update-cluster-config", json=update).raise_for_status()

    def ready() -> bool:
        r = http.get(f"{API}/list-versions", params=body)
        versions = r.json().get("endpoint_versions", []) if r.status_code == 200 else []
        return any(v["state"] == _READY for v in versions) and bool(events(http, "VERSION_READY"))

    wait_until(ready, 300, "version 1 READY")


def wake_once(http: httpx.Client, round_: int) -> float:
    """Wait for the round's VERSION_IDLE, then time one request (it must answer 200)."""
    wait_until(lambda: len(events(http, "VERSION_IDLE")) >= round_, 120, f"idle #{round_}")
    started = time.perf_counter()
    r = http.post(f"/model/{MODEL}/1/invocations", json={"dataframe_records": [ROW]})
    took = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"wake {round_}: {r.status_code} {r.text}")
    return took


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakes", type=int, default=20)
    parser.add_argument("--idle-after", type=float, default=1.0)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="rsiw-"))
    server = start_regserve(workdir / "data", workdir, {"REGSERVE_ENV_MANAGER": "local"})
    try:
        register(server)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            serve(http, args.idle_after)
            before = os.getloadavg()[0]
            times = [wake_once(http, n) for n in range(1, args.wakes + 1)]
            woken = [
                float(m.group(1)) for t in events(http, "VERSION_WOKEN") if (m := _TOOK.search(t))
            ]
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    ms = [t * 1000 for t in times]
    print(
        f"wakes: {len(ms)}; idle timeout {args.idle_after:g} s; load average before: {before:.2f}"
    )
    p50, p99, mean = percentile(ms, 0.5), percentile(ms, 0.99), statistics.mean(ms)
    print(
        f"first request to the idle version (HTTP, wake included): p50 {p50:.0f} ms, "
        f"p99 {p99:.0f} ms, max {max(ms):.0f} ms, mean {mean:.0f} ms"
    )
    if woken:
        wake_ms = [w * 1000 for w in woken]
        print(
            f"VERSION_WOKEN (wake to first replica READY): p50 {percentile(wake_ms, 0.5):.0f} ms, "
            f"max {max(wake_ms):.0f} ms"
        )


if __name__ == "__main__":
    main()
