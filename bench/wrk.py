"""Drives a server with wrk: a Lua script sets method, headers and body and reports as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["INSTALL_HINT", "Load", "WrkResult", "require_wrk", "run_wrk"]

INSTALL_HINT = (
    "wrk is not installed. On Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk"
)

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Load:
    """What one wrk run sends: to which paths (round robin), with which headers and body."""

    paths: tuple[str, ...]
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def _lua(load: Load) -> str:
    headers = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in load.headers)
    paths = ", ".join(json.dumps(p) for p in load.paths)
    # Lua long brackets keep the body verbatim; the level is chosen so it cannot close early.
    level = "=" * 8
    return f"""
{headers}
local body = [{level}[{load.body.decode()}]{level}]
local paths = {{{paths}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", paths[(i % #paths) + 1], nil, body)
end
{_DONE}
"""


def run_wrk(base_url: str, load: Load, connections: int, seconds: float) -> WrkResult:
    """One wrk run (one thread: the machine is small and wrk is not the bottleneck)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(load))
    try:
        out = subprocess.run(
            [
                require_wrk(),
                "-t1",
                f"-c{connections}",
                f"-d{seconds:g}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                base_url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line[len("WRKJSON ") :])
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        non2xx=raw["non2xx"],
        socket_errors=raw["socket_errors"],
    )
