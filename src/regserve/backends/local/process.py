"""Starting, stopping and reaping local worker processes (one-version and shared alike)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from regserve.backends.local.logs import rotate_if_large
from regserve.backends.local.paths import WorkerPaths

__all__ = ["describe_exit", "reap_stale_workers", "spawn_worker", "terminate"]

_log = logging.getLogger("regserve.supervisor")
_STOP_GRACE = 15.0


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is not running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    if code == 3:
        return "exited with code 3 (the model could not be loaded)"
    return f"exited with code {code}"


async def spawn_worker(
    python: str,
    args: list[str],
    paths: WorkerPaths,
    pythonpath: Path | None,
    log_max_bytes: int,
    place: Callable[[int], None] | None = None,
) -> asyncio.subprocess.Process:
    """``python -m regserve.worker --socket <paths.socket> *args``, output appended to the log,
    in its own session (a terminal's Ctrl-C does not reach it), with a pid file for reaping;
    ``place`` puts it under its cluster's limits right away (limits.ResourceLimits.place)."""
    rotate_if_large(paths.log, log_max_bytes)
    paths.socket.unlink(missing_ok=True)
    env = _worker_environment()
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)  # the worker only, not regserve's deps
    with paths.log.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            python, "-m", "regserve.worker", "--socket", str(paths.socket), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
    if place is not None:  # node type limits (backends/local/limits)
        place(process.pid)
    paths.pidfile.write_text(json.dumps({"pid": process.pid, "socket": str(paths.socket)}))
    return process


async def terminate(process: asyncio.subprocess.Process | None) -> None:
    """SIGTERM (the worker finishes its in-flight requests), SIGKILL after a grace period."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), _STOP_GRACE)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


_SERVER_ONLY_ENV = ("_MLFLOW_SERVER_", "MLFLOW_WEBHOOK_")


def _worker_environment() -> dict[str, str]:
    """The environment of a worker: ours, less the hosted MLflow server's configuration."""
    # The webhook variables include the key MLflow encrypts webhook secrets with (hosted.py).
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SERVER_ONLY_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def reap_stale_workers(run_dir: Path) -> None:
    """Stop workers a previous regserve process left behind (after a crash or kill -9)."""
    for pidfile in run_dir.glob("*.pid"):
        try:
            info = json.loads(pidfile.read_text())
            pid = int(info["pid"])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, KeyError):
            pidfile.unlink(missing_ok=True)
            continue
        if b"regserve.worker" in cmdline and info["socket"].encode() in cmdline:
            _log.info("stopping worker pid %s left by a previous run", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
