"""What writing captured rows costs the gateway's writer thread, per storage:
``python -m bench.table_writes --store-uri postgresql+psycopg://.../EMPTY_DB [--batches 10]``.

Writes the same batches of 1,000 bench-like rows (a 1-row iris request and its answer) to
Parquet files in a temporary folder and to the PostgreSQL store's ``inference_rows``, in turn,
and prints per row the CPU time of the writing thread (what it may take of the GIL the event
loop needs) and the wall time (what bounds the rows a second one writer keeps up with).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

from regserve.inference.database import DatabaseTables
from regserve.inference.parquet import ParquetTables
from regserve.inference.rows import CapturedRow
from regserve.inference.storage import TableStorage
from regserve.store import StateStore

_BODY = (
    b'{"dataframe_records": [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, '
    b'"petal length (cm)": 1.4, "petal width (cm)": 0.2}]}'
)


def _row(n: int, now_ms: int) -> CapturedRow:
    return CapturedRow(
        request_id=f"{n:032x}",
        time_ms=now_ms - n,
        model="bench-iris",
        version="1",
        ref="1",
        route=None,
        shadow=False,
        caller="admin",
        status_code=200,
        latency_ms=1.234,
        content_type="application/json",
        request=_BODY,
        request_truncated=False,
        response=b'{"predictions": [0]}',
        response_truncated=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table_writes", description=__doc__)
    parser.add_argument("--store-uri", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--batches", type=int, default=10, help="batches of 1,000 rows each")
    args = parser.parse_args(argv)
    store = StateStore(args.store_uri)
    store.migrate()
    folder = Path(tempfile.mkdtemp(prefix="regserve-bench-tables-"))
    sinks: dict[str, TableStorage] = {
        "parquet": ParquetTables(folder),
        "postgresql": DatabaseTables(store),
    }
    now_ms, day = int(time.time() * 1000), dt.datetime.now(dt.timezone.utc).date()
    rows = [_row(n, now_ms) for n in range(1000)]
    spent = {name: [0.0, 0.0] for name in sinks}
    try:
        for _ in range(args.batches):
            for name, sink in sinks.items():
                cpu, wall = time.thread_time(), time.perf_counter()
                sink.write("bench-iris", day, rows)
                spent[name][0] += time.thread_time() - cpu
                spent[name][1] += time.perf_counter() - wall
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
    count = args.batches * len(rows)
    for name, (cpu, wall) in spent.items():
        per_row = f"{cpu / count * 1e6:6.1f} µs CPU/row  {wall / count * 1e6:6.1f} µs wall/row"
        print(f"{name:10} {per_row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
