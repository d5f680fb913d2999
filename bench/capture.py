"""What an inference table costs, alone: ``python -m bench.capture [--seconds 10] [--rounds 1]
[--store-uri postgresql+psycopg://...]``.

Starts ``regserve up`` serving the bench model, then drives ``1-row records c=32`` with wrk
with the model's inference table off and on (sample 1.0: every request captured), ``rounds``
times in turn, and prints both and the change. ``make bench`` measures the same pair among
its scenarios (the ``inference table on`` row); this runs only that pair, for a quick figure.
``--store-uri``: regserve's store (an empty PostgreSQL database: the rows go to its
``inference_rows`` table instead of Parquet files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from bench import report
from bench.run import CAPTURE, CAPTURE_BASE, Targets, drive, measure, scenarios, serve_bench_model
from bench.servers import start_regserve
from bench.wrk import require_wrk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capture", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=1, help="off/on pairs, in turn")
    parser.add_argument("--store-uri", default=None, help="default: SQLite in the data dir")
    args = parser.parse_args(argv)
    require_wrk()
    base = next(s for s in scenarios(False) if s.name == CAPTURE_BASE)
    workdir = Path(tempfile.mkdtemp(prefix="regserve-bench-capture-"))
    store = {"REGSERVE_STORE_URI": args.store_uri} if args.store_uri else None
    server = start_regserve(workdir / "data", workdir, store)
    try:
        serve_bench_model(server)
        targets = Targets(server, [], server)
        drive(targets, "regserve", base, 2.0)  # warm-up
        costs = []
        for _ in range(args.rounds):
            off = measure(targets, base, args.seconds, ("regserve",))
            rows = off + measure(targets, CAPTURE, args.seconds)
            costs.append(report.capture_cost(rows, CAPTURE_BASE, CAPTURE.name))
        written = sum(1 for _ in (workdir / "data" / "inference").rglob("*.parquet"))
        print(json.dumps({"costs": costs, "files_written": written}, indent=2))
        print(f"load average after: {os.getloadavg()}")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
