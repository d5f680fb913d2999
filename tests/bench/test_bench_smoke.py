"""``make bench`` keeps working: its smoke mode runs end to end and writes its JSON.

Not a timed test: the figures are read for their shape, never compared with targets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_writes_its_results(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        require_service("wrk is not installed (apt-get install -y wrk)")
    out = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "bench.json").read_text())
    assert result["smoke"] is True
    rows = result["results"]
    assert {r["target"] for r in rows} == {"mlflow", "regserve", "ceiling"}
    for row in rows:
        assert row["requests"] > 0, row
        assert row["p50_ms"] > 0, row
    assert {q["scenario"] for q in result["ratios"]} == {r["scenario"] for r in rows}
    assert result["memory"]["regserve_two_versions"]["workers"] == 2
    assert "| scenario | server | req/s |" in run.stdout
    assert not (out / "bench.png").exists()  # the chart and docs are for full runs
