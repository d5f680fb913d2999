"""LocalBackend: starts one worker subprocess per served version, watches it, restarts it.

A worker that exits unexpectedly is restarted with exponential backoff; one that crashes
``max_restarts`` times in a row without becoming ready is marked FAILED with the tail of its
log in the state message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from regserve.backends.base import VersionEvent, VersionListener, VersionSpec
from regserve.backends.batching import BatchSettings
from regserve.backends.local.client import WorkerClient
from regserve.backends.local.logs import read_tail, rotate_if_large
from regserve.backends.local.paths import WorkerPaths, run_dir_for
from regserve.errors import RegServeError
from regserve.settings import Settings
from regserve.store import ClusterConfig

__all__ = ["LocalBackend"]

_log = logging.getLogger("regserve.supervisor")

LAUNCHING = "VERSION_STATE_LAUNCHING"
READY = "VERSION_STATE_READY"
FAILED = "VERSION_STATE_FAILED"
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


class _Slot:
    """One version's worker: its process, its connection and its restart bookkeeping."""

    def __init__(self, spec: VersionSpec, paths: WorkerPaths) -> None:
        self.spec = spec
        self.paths = paths
        self.client = WorkerClient(
            str(paths.socket), f"Version {spec.version} of '{spec.model_name}'"
        )
        self.process: asyncio.subprocess.Process | None = None
        self.state = LAUNCHING
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"version {self.spec.version} of '{self.spec.model_name}'"


class LocalBackend:
    """Worker subprocesses on this machine (``--backend local``)."""

    def __init__(self, settings: Settings, listener: VersionListener) -> None:
        self._settings = settings
        self._data_dir = settings.resolved_data_dir()
        self._listener = listener
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._clusters: dict[str, ClusterConfig] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        run_dir = run_dir_for(self._data_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(_reap_stale_workers, run_dir)

    async def close(self) -> None:
        await asyncio.gather(*(self.undeploy(m, v) for m, v in list(self._slots)))

    async def start_cluster(self, model_name: str, config: ClusterConfig) -> None:
        self._clusters[model_name] = config

    async def stop_cluster(self, model_name: str) -> None:
        await asyncio.gather(
            *(self.undeploy(m, v) for m, v in list(self._slots) if m == model_name)
        )
        self._clusters.pop(model_name, None)

    # -- versions ----------------------------------------------------------------------------

    async def deploy(self, spec: VersionSpec) -> None:
        key = (spec.model_name, spec.version)
        if key in self._slots:
            return
        paths = WorkerPaths.for_version(self._data_dir, spec.model_name, spec.version)
        paths.log.parent.mkdir(parents=True, exist_ok=True)
        paths.socket.parent.mkdir(parents=True, exist_ok=True)
        slot = _Slot(spec, paths)
        self._slots[key] = slot
        slot.task = asyncio.create_task(self._supervise(slot), name=f"supervise {key}")

    async def undeploy(self, model_name: str, version: str) -> None:
        slot = self._slots.pop((model_name, version), None)
        if slot is None:
            return
        slot.stopping.set()
        await self._terminate(slot)
        if slot.task is not None:
            slot.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slot.task
        slot.client.close()
        for path in (slot.paths.socket, slot.paths.pidfile):
            path.unlink(missing_ok=True)

    def target(self, model_name: str, version: str) -> WorkerClient | None:
        slot = self._slots.get((model_name, version))
        return slot.client if slot is not None and slot.state == READY else None

    def deployed(self, model_name: str) -> set[str]:
        return {v for m, v in self._slots if m == model_name}

    def log_file(self, model_name: str, version: str) -> Path:
        path = WorkerPaths.for_version(self._data_dir, model_name, version).log
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def read_logs(self, model_name: str, version: str) -> str:
        path = WorkerPaths.for_version(self._data_dir, model_name, version).log
        return read_tail(path, max_lines=2000, max_bytes=1024 * 1024)

    def worker_pid(self, model_name: str, version: str) -> int | None:
        slot = self._slots.get((model_name, version))
        if slot is None or slot.process is None or slot.process.returncode is not None:
            return None
        return slot.process.pid

    # -- supervision -------------------------------------------------------------------------

    def _emit(
        self, slot: _Slot, state: str, message: str, event_type: str = "", text: str = ""
    ) -> None:
        slot.state = state
        pid = slot.process.pid if slot.process and slot.process.returncode is None else None
        self._listener(
            VersionEvent(
                slot.spec.model_name, slot.spec.version, state, message, event_type, text, pid
            )
        )

    async def _supervise(self, slot: _Slot) -> None:
        failures = 0
        restarted = False
        while not slot.stopping.is_set():
            attempt = f" (attempt {failures + 1})" if failures else ""
            self._emit(slot, LAUNCHING, f"Loading the model{attempt}.")
            try:
                process = await self._spawn(slot)
            except (OSError, RegServeError) as exc:
                self._emit(
                    slot,
                    FAILED,
                    f"Could not start the worker: {exc}",
                    "VERSION_FAILED",
                    f"Could not start the worker: {exc}",
                )
                return
            if await self._wait_ready(slot, process):
                failures = 0
                if restarted:
                    self._emit(
                        slot,
                        READY,
                        "Serving.",
                        "WORKER_RESTARTED",
                        f"Worker restarted (pid {process.pid}) and is serving again.",
                    )
                else:
                    self._emit(
                        slot,
                        READY,
                        "Serving.",
                        "VERSION_READY",
                        f"Version {slot.spec.version} is ready (worker pid {process.pid}).",
                    )
            code = await process.wait()
            if slot.stopping.is_set():
                return
            failures += 1
            restarted = True
            why = f"Worker pid {process.pid} {describe_exit(code)}"
            if failures >= self._settings.max_restarts:
                tail = read_tail(slot.paths.log, max_lines=15)
                message = f"{why}; it crashed {failures} times in a row. Last log lines:\n{tail}"
                self._emit(slot, FAILED, message, "VERSION_FAILED", message)
                return
            delay = min(
                self._settings.restart_backoff_base * 2 ** (failures - 1),
                self._settings.restart_backoff_max,
            )
            allowed = self._settings.max_restarts - 1
            text = f"{why}; restarting in {delay:g} s (restart {failures} of {allowed})."
            self._emit(slot, LAUNCHING, text, "WORKER_CRASHED", text)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(slot.stopping.wait(), delay)

    async def _spawn(self, slot: _Slot) -> asyncio.subprocess.Process:
        spec, paths = slot.spec, slot.paths
        rotate_if_large(paths.log, self._settings.log_max_bytes)
        paths.socket.unlink(missing_ok=True)
        python = str(spec.python or sys.executable)
        env = _worker_environment()
        if spec.python is not None and spec.worker_path is not None:
            env["PYTHONPATH"] = str(spec.worker_path)  # the worker only, not regserve's deps
        cluster = self._clusters.get(spec.model_name)
        batching = BatchSettings.from_tags(cluster.tags if cluster else ())
        with paths.log.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                python, "-m", "regserve.worker",
                "--socket", str(paths.socket),
                "--model-path", str(spec.model_path),
                "--name", spec.model_name,
                "--version", spec.version,
                *batching.worker_args(),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                env=env, start_new_session=True,
            )  # fmt: skip
        slot.process = process
        paths.pidfile.write_text(json.dumps({"pid": process.pid, "socket": str(paths.socket)}))
        _log.info("started worker pid %s for %s", process.pid, slot.label)
        return process

    async def _wait_ready(self, slot: _Slot, process: asyncio.subprocess.Process) -> bool:
        """Poll the worker until it answers a ping; False when it exits or takes too long."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.worker_start_timeout
        while process.returncode is None and not slot.stopping.is_set():
            if slot.paths.socket.exists():
                with contextlib.suppress(RegServeError, OSError, ValueError):
                    await slot.client.ping(timeout=5.0)
                    return True
            if loop.time() > deadline:
                _log.warning("%s did not become ready in time; killing it", slot.label)
                process.kill()
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), 0.05)
        return False

    async def _terminate(self, slot: _Slot) -> None:
        process = slot.process
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


def _reap_stale_workers(run_dir: Path) -> None:
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
