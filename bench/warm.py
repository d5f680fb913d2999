"""A new version's start, cold and warm: seconds from the local backend's start of the version
to its first prediction, with ``REGSERVE_WARM_START=0`` (its template started cold: interpreter,
imports, model) and with warm starts on (its template forked from the model's warm process: the
model load only).

Each round, for each mode (their order alternates, so both share the machine's load): a fresh
data dir and ``LocalBackend`` (``--env-manager local``, no worker users, no resource limits),
version 1 of a small scikit-learn iris model deployed and READY (and, warm, the model's warm
process up), then version 2 (another copy of the model) deployed and timed to its first 200.
Prints the medians of N rounds and their ratio.

Run: ``.venv/bin/python -m bench.warm --rounds 5`` (under ``nice`` on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.env_times import ROW, save_model
from regserve.backends.base import VersionEvent, VersionSpec
from regserve.backends.local.backend import LocalBackend
from regserve.backends.local.paths import run_dir_for
from regserve.backends.local.worker_records import read_record
from regserve.settings import Settings

MODEL = "iris"
BODY = json.dumps({"dataframe_records": [ROW]}).encode()
MODES = ("cold", "warm")
_TIMEOUT = 600.0


async def _first_prediction(backend: LocalBackend, version: str) -> None:
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:
        target = backend.target(MODEL, version)
        if target is not None:
            response = await target.request("application/json", BODY, 30)
            if response.status == 200:
                return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"version {version} gave no prediction in {_TIMEOUT:g} s")


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} after {_TIMEOUT:g} s")
        await asyncio.sleep(0.05)


async def one_round(mode: str, models: list[Path]) -> float:
    """Seconds from deploying version 2 to its first prediction, in ``mode``."""
    data_dir = Path(tempfile.mkdtemp(prefix="rsbw-"))
    settings = Settings(
        data_dir=data_dir,
        worker_users="off",
        resource_limits="off",
        env_manager="local",
        warm_start=mode == "warm",
        worker_start_timeout=_TIMEOUT,
    )
    events: list[VersionEvent] = []
    backend = LocalBackend(settings, events.append)
    await backend.start()
    try:
        await backend.deploy(VersionSpec(MODEL, "1", models[0]))
        await _first_prediction(backend, "1")
        if mode == "warm":
            await _until(lambda: _happened(events, "WARM_PROCESS_STARTED"), "warm process up")
        await asyncio.sleep(1.0)  # version 1's standby template is forked in the background
        begin = time.monotonic()
        await backend.deploy(VersionSpec(MODEL, "2", models[1]))
        await _first_prediction(backend, "2")
        seconds = time.monotonic() - begin
        if mode == "warm":
            print(f"  warm process memory: {_warm_memory(settings)}", flush=True)
        return seconds
    finally:
        await backend.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _warm_memory(settings: Settings) -> str:
    """The warm process's RSS and PSS (its pages are shared with the templates it forked)."""
    records = list(run_dir_for(settings.resolved_data_dir()).glob("*.warm"))
    record = read_record(records[0]) if records else None
    if record is None:
        return "no warm process"
    try:
        rollup = Path(f"/proc/{record.pid}/smaps_rollup").read_text().splitlines()
    except OSError as exc:
        return f"unreadable ({exc})"
    sizes = {line.split()[0]: int(line.split()[1]) for line in rollup[1:] if line.endswith("kB")}
    return f"RSS {sizes['Rss:'] / 1024:.0f} MiB, PSS {sizes['Pss:'] / 1024:.0f} MiB"


def _happened(events: list[VersionEvent], event_type: str) -> bool:
    return any(event.event_type == event_type for event in events)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(rounds: int) -> dict[str, list[float]]:
    workdir = Path(tempfile.mkdtemp(prefix="rsbw-models-"))
    try:
        first = save_model(workdir / "1")
        models = [first, Path(shutil.copytree(first, workdir / "2"))]
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for index in range(rounds):
            order = MODES if index % 2 == 0 else MODES[::-1]
            for mode in order:
                seconds = await one_round(mode, models)
                times[mode].append(seconds)
                print(f"round {index + 1} {mode}: {seconds:.2f} s (load {_load()})", flush=True)
        return times
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(times: dict[str, list[float]], load_before: str, load_after: str) -> str:
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    lines = [
        f"load average before: {load_before}; after: {load_after}",
        "| mode | median (s) | min | max | rounds |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, values in times.items():
        label = "cold (REGSERVE_WARM_START=0)" if mode == "cold" else "warm (default)"
        lines.append(
            f"| {label} | {medians[mode]:.2f} | {min(values):.2f} | {max(values):.2f} "
            f"| {len(values)} |"
        )
    lines.append(f"cold / warm: {medians['cold'] / medians['warm']:.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.warm", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per mode (median)")
    args = parser.parse_args(argv)
    before = _load()
    times = asyncio.run(run(args.rounds))
    print(report(times, before, _load()))


if __name__ == "__main__":
    main()
