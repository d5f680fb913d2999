"""Start-up times of ``regserve up --demo``: to listening, to the demo registered, to the first
prediction, fresh and after a restart (Ctrl-C, then the same command on the same data dir).

Each figure is seconds from spawning the command. "Listening" is the console line; "registered"
is the demo model complete in the registry (its ``regserve.demo`` tag, read over MLflow's API);
"first prediction" is the first 200 from ``/model/iris-classifier/Production/invocations``.
``--before REF`` measures the code of a git ref too, in the same run (``git archive`` into a
temporary directory put first on ``PYTHONPATH``), so before and after share the machine's load.

Run: ``.venv/bin/python -m bench.start [--before main] [--env-manager local virtualenv]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "StartedRegServe",
    "fresh_demo",
    "restart_demo",
    "source_of",
    "start_demo",
    "stop",
    "to_first_prediction",
    "to_line",
    "to_listening",
    "to_registered",
]

TOKEN = "rs-bench-start-token"
MODEL = "iris-classifier"
BODY = {
    "dataframe_records": [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    ]
}
_TIMEOUT = 600.0


@dataclass
class StartedRegServe:
    """One ``regserve up --demo`` process and its console lines, each with its time (seconds
    since the spawn)."""

    process: subprocess.Popen[str]
    url: str
    spawned: float
    lines: list[tuple[float, str]] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.spawned


def source_of(ref: str, into: Path) -> Path:
    """The ``src`` directory of git ``ref``, extracted into ``into`` (for ``PYTHONPATH``)."""
    archive = subprocess.run(["git", "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def start_demo(
    data_dir: Path, port: int, env_manager: str | None, source: Path | None = None
) -> StartedRegServe:
    """Spawn ``regserve up --demo`` (the code under ``source`` when given) and keep its lines."""
    env = {**os.environ, "REGSERVE_ADMIN_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "regserve.cli",
        "up",
        "--demo",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if env_manager:
        command += ["--env-manager", env_manager]
    spawned = time.monotonic()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    started = StartedRegServe(process, f"http://127.0.0.1:{port}", spawned)
    threading.Thread(target=_keep_lines, args=(started,), daemon=True).start()
    return started


def _keep_lines(started: StartedRegServe) -> None:
    assert started.process.stdout is not None
    for line in started.process.stdout:
        started.lines.append((started.elapsed(), line.rstrip("\n")))


def _poll(started: StartedRegServe, check: Callable[[], bool], what: str) -> float:
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            tail = "\n".join(line for _, line in started.lines[-30:])
            raise RuntimeError(f"regserve exited while waiting for {what}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return started.elapsed()
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {_TIMEOUT:g} s")


def to_line(started: StartedRegServe, needle: str) -> float:
    """Seconds from the spawn to the first console line containing ``needle``."""

    def seen() -> bool:
        return any(needle in line for _, line in started.lines)

    _poll(started, seen, f"a line with {needle!r}")
    return next(at for at, line in started.lines if needle in line)


def to_listening(started: StartedRegServe) -> float:
    """Seconds from the spawn to the "listening" line."""
    return to_line(started, "listening on")


def to_registered(started: StartedRegServe) -> float:
    """Seconds from the spawn to the demo model complete in the registry."""

    def complete() -> bool:
        r = httpx.get(
            f"{started.url}/api/2.0/mlflow/registered-models/get",
            params={"name": MODEL},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )
        tags = r.json().get("registered_model", {}).get("tags", []) if r.status_code == 200 else []
        return {"key": "regserve.demo", "value": "complete"} in tags

    return _poll(started, complete, "the demo model registered")


def to_first_prediction(started: StartedRegServe) -> float:
    """Seconds from the spawn to the first good prediction from the demo's Production URL."""

    def predicted() -> bool:
        r = httpx.post(
            f"{started.url}/model/{MODEL}/Production/invocations",
            json=BODY,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        return r.status_code == 200

    return _poll(started, predicted, "the first prediction")


def stop(started: StartedRegServe, sig: int = signal.SIGINT) -> float:
    """Ctrl-C (SIGINT: the workers stop too); seconds until the process has exited."""
    begun = time.monotonic()
    started.process.send_signal(sig)
    try:
        started.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        started.process.kill()
        started.process.wait()
    return time.monotonic() - begun


def fresh_demo(
    data_dir: Path, port: int, env_manager: str | None, source: Path | None = None
) -> tuple[dict[str, float], StartedRegServe]:
    """A fresh data dir to listening, registered and first prediction (still running)."""
    started = start_demo(data_dir, port, env_manager, source)
    figures = {
        "listening": to_listening(started),
        "registered": to_registered(started),
        "first prediction": to_first_prediction(started),
    }
    return figures, started


def restart_demo(
    data_dir: Path, port: int, env_manager: str | None, source: Path | None = None
) -> tuple[dict[str, float], StartedRegServe]:
    """The same command on a data dir a Ctrl-C'd run left: to listening and first prediction."""
    started = start_demo(data_dir, port, env_manager, source)
    figures = {
        "listening": to_listening(started),
        "first prediction": to_first_prediction(started),
    }
    return figures, started


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _stopped_at_end(started: StartedRegServe) -> Iterator[StartedRegServe]:
    try:
        yield started
    finally:
        if started.process.poll() is None:
            stop(started)


def measure(label: str, env_manager: str | None, source: Path | None, root: Path) -> dict[str, Any]:
    """Fresh start, Ctrl-C, restart, Ctrl-C of one code and env manager; its figures."""
    data_dir = root / f"{label}-{env_manager or 'default'}"
    port = _free_port()
    fresh, started = fresh_demo(data_dir, port, env_manager, source)
    with _stopped_at_end(started):
        fresh["stop"] = stop(started)
    fresh_lines = [f"{at:7.2f}  {line}" for at, line in started.lines]
    again, started = restart_demo(data_dir, port, env_manager, source)
    with _stopped_at_end(started):
        again["stop"] = stop(started)
    lines = [f"{at:7.2f}  {line}" for at, line in started.lines]
    return {
        "code": label,
        "env_manager": env_manager or "virtualenv (default)",
        "fresh": fresh,
        "restart": again,
        "fresh_console": fresh_lines,
        "restart_console": lines,
    }


def _table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| code | env manager | fresh: listening | registered | first prediction "
        "| restart: listening | first prediction |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        f, a = r["fresh"], r["restart"]
        rows.append(
            f"| {r['code']} | {r['env_manager']} | {f['listening']:.1f} | {f['registered']:.1f} "
            f"| {f['first prediction']:.1f} | {a['listening']:.1f} | {a['first prediction']:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git ref to measure too, in the same run (e.g. main)")
    parser.add_argument("--env-manager", nargs="+", default=["local", "virtualenv"])
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="regserve-start-") as tmp:
        root = Path(tmp)
        codes: list[tuple[str, Path | None]] = [("this tree", None)]
        if args.before:
            (root / "before").mkdir()
            codes.insert(0, (f"{args.before}", source_of(args.before, root / "before")))
        for env_manager in args.env_manager:
            for label, source in codes:
                manager = None if env_manager == "virtualenv" else env_manager
                result = measure(label.replace(" ", "-"), manager, source, root)
                result["code"] = label
                results.append(result)
                print(
                    json.dumps({k: result[k] for k in ("code", "env_manager", "fresh", "restart")}),
                    flush=True,
                )
    load = os.getloadavg()
    print(f"\n{os.cpu_count()} CPUs, load average at the end {load[0]:.2f}, {load[1]:.2f}\n")
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
