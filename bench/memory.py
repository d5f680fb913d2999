"""``make bench-memory``: resident memory as versions grow, worker sharing off and on.

For each of ``REGSERVE_SHARE_WORKERS=false`` and ``true`` it starts ``regserve up``
(``--env-manager local``), registers one small scikit-learn model, serves 1, 5 and 20 versions
of it (more versions are registered from the first one's logged artifacts, so nothing is
trained or uploaded again) and reads the RSS and PSS of the main process and of every worker
process (replicas and the templates they are forked from) from ``/proc``. For reference it
also measures one ``mlflow models serve`` of the same model.
Prints a table and writes ``bench/results/memory.json``.

Run: ``.venv/bin/python -m bench.memory [--versions 1,5,20] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import (
    API,
    ROOT,
    _http,
    _mlflow_memory,
    _ready_versions,
    _regserve_memory,
    _use_registry,
)
from bench.servers import (
    Server,
    log_bench_model,
    served_model_dir,
    start_mlflow,
    start_regserve,
    wait_until,
)

MODEL = "bench-memory"


def serve_versions(server: Server, counts: list[int]) -> list[dict[str, Any]]:
    """Grow the model to each count of versions; RSS once they are all READY."""
    from mlflow import MlflowClient

    _use_registry(server)
    _, uri, run_id, model_id = log_bench_model(MODEL)
    client = MlflowClient()
    registered = 1
    rows: list[dict[str, Any]] = []
    with _http(server) as http:
        http.post(f"{API}/enable", json={"registered_model_name": MODEL}).raise_for_status()
        for count in counts:
            while registered < count:
                client.create_model_version(MODEL, uri, run_id, model_id=model_id)
                registered += 1
            started = time.monotonic()
            wait_until(
                lambda c=count: len(_ready_versions(http, MODEL)) >= c,  # type: ignore[misc]
                60 + 15 * count,
                f"{count} versions READY",
            )
            ready_s = round(time.monotonic() - started, 1)
            time.sleep(2)  # let freshly started workers settle
            rows.append({"versions": count, "ready_s": ready_s, **_regserve_memory(server)})
            print(f"  {count:3} versions: {rows[-1]}", flush=True)
    return rows


def measure(counts: list[int], workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S")}
    for share in (False, True):
        name = "shared" if share else "one_per_version"
        print(f"regserve, REGSERVE_SHARE_WORKERS={str(share).lower()}", flush=True)
        settings = {
            "REGSERVE_ENV_MANAGER": "local",
            "REGSERVE_SHARE_WORKERS": str(share).lower(),
            "REGSERVE_POLL_INTERVAL": "1",
        }
        data = workdir / f"data-{name}"
        server = start_regserve(data, workdir, settings, tag=f"-{name}")
        try:
            result[name] = serve_versions(server, counts)
        finally:
            server.stop()
    mlflow = start_mlflow(served_model_dir(data, MODEL, "1"), workdir, "memory")
    try:
        time.sleep(2)
        result["mlflow_one_version"] = _mlflow_memory([mlflow])
    finally:
        mlflow.stop()
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        "| versions | sharing | worker processes | main MiB | workers MiB | total MiB "
        "| total PSS MiB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("one_per_version", "off"), ("shared", "on")):
        for row in result[name]:
            lines.append(
                f"| {row['versions']} | {label} | {row['workers']} | {row['main_mb']:.0f} | "
                f"{row['workers_mb']:.0f} | {row['total_mb']:.0f} | "
                f"{row.get('total_pss_mb', 0):.0f} |"
            )
    ml = result["mlflow_one_version"]
    lines.append(
        f"| 1 | `mlflow models serve` | 1 | launcher {ml['launcher_mb']:.0f} | "
        f"{ml['serving_mb']:.0f} | {ml['total_mb']:.0f} | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--versions", default="1,5,20", help="counts of versions to serve")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.versions.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="regserve-memory-"))
    print(f"logs in {workdir}", flush=True)
    result = measure(counts, workdir)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
