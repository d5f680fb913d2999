"""LocalBackend: starts one worker subprocess per served version, watches it, restarts it.

A worker that exits unexpectedly is restarted with exponential backoff; one that crashes
``max_restarts`` times in a row without becoming ready is marked FAILED with the tail of its
log in the state message. With worker sharing on for a model (``REGSERVE_SHARE_WORKERS`` or
its ``regserve.share_workers`` tag), its versions that share an environment run in one
:class:`~regserve.backends.local.shared.SharedWorker` instead.

Workers outlive this process: ``start`` finds the ones a previous process left
(:mod:`.adoption`), ``adopt`` serves a version from one of them (no new process), and
``close(keep_workers=True)`` leaves them running for the next process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from functools import partial
from pathlib import Path

from regserve.backends.base import Adopted, VersionEvent, VersionListener, VersionSpec
from regserve.backends.batching import BatchSettings
from regserve.backends.local.adoption import Leftovers
from regserve.backends.local.client import WorkerClient
from regserve.backends.local.logs import read_tail
from regserve.backends.local.paths import WorkerPaths, run_dir_for
from regserve.backends.local.process import (
    ProcessHandle,
    WorkerProcess,
    describe_exit,
    spawn_worker,
    terminate,
    wait_exit,
)
from regserve.backends.local.records import WorkerRecord
from regserve.backends.local.shared import SharedWorker
from regserve.backends.sharing import share_workers
from regserve.errors import RegServeError
from regserve.settings import Settings
from regserve.store import ClusterConfig

__all__ = ["LocalBackend"]

_log = logging.getLogger("regserve.supervisor")

LAUNCHING = "VERSION_STATE_LAUNCHING"
READY = "VERSION_STATE_READY"
FAILED = "VERSION_STATE_FAILED"


class _Slot:
    """One version's worker: its process, its connection and its restart bookkeeping."""

    def __init__(self, spec: VersionSpec, paths: WorkerPaths) -> None:
        self.spec = spec
        self.paths = paths
        self.client = WorkerClient(
            str(paths.socket), f"Version {spec.version} of '{spec.model_name}'"
        )
        self.process: ProcessHandle | None = None
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
        self._shared: dict[tuple[str, str], SharedWorker] = {}
        """(model, version) -> the shared worker it runs in."""
        self._clusters: dict[str, ClusterConfig] = {}
        self._leftovers = Leftovers()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        run_dir = run_dir_for(self._data_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        await self._leftovers.find(run_dir)

    async def close(self, keep_workers: bool = False) -> None:
        if not keep_workers:
            await asyncio.gather(*(self.undeploy(m, v) for m, v in self._keys()))
            await self._leftovers.release()
            return
        # Leave every worker running with its record; closing our connections starts their
        # orphan watch, which the next process's connections stop.
        for slot in self._slots.values():
            slot.stopping.set()
            if slot.task is not None:
                slot.task.cancel()
            slot.client.close()
        for group in {id(g): g for g in self._shared.values()}.values():
            await group.close(keep_worker=True)
        self._slots.clear()
        self._shared.clear()

    async def adopt(self, model_name: str, version: str, model_path: Path) -> Adopted | None:
        paths = WorkerPaths.for_version(self._data_dir, model_name, version)
        leftover = self._leftovers.claim(str(paths.socket))
        if leftover is None:
            return None
        record = leftover.record
        why = self._mismatch(record, model_name, version, model_path)
        if why:
            await self._leftovers.discard(leftover, why)
            return None
        python = Path(record.python)
        spec = VersionSpec(
            model_name, version, model_path,
            python if record.env_key else None,
            Path(record.pythonpath) if record.pythonpath else None,
            record.env_key,
        )  # fmt: skip
        slot = _Slot(spec, paths)
        slot.client.close()
        slot.client = leftover.client  # already connected: the worker's supervisor from now
        slot.process = WorkerProcess(record)
        slot.state = READY
        self._slots[(model_name, version)] = slot
        slot.task = asyncio.create_task(self._supervise(slot), name=f"supervise {paths.socket}")
        _log.info("adopted worker pid %s for %s", record.pid, slot.label)
        return Adopted(record.pid, record.env_key)

    def _mismatch(self, record: WorkerRecord, model_name: str, version: str, path: Path) -> str:
        """Why a leftover worker cannot serve this version now ("" when it can)."""
        cluster = self._clusters.get(model_name)
        if record.shared or share_workers(
            cluster.tags if cluster else (), self._settings.share_workers
        ):
            return "worker sharing is on for the model, or was when it started"
        if (record.model_name, record.version) != (model_name, version):
            return f"it serves version {record.version} of '{record.model_name}'"
        if record.model_path != str(path):
            return f"it runs the model in {record.model_path}, not {path}"
        local = self._settings.env_manager == "local"
        if local != (record.env_key is None) or (local and record.python != sys.executable):
            return f"it runs in another environment ({record.env_key or record.python})"
        return ""

    async def release_leftovers(self) -> None:
        await self._leftovers.release()

    async def start_cluster(self, model_name: str, config: ClusterConfig) -> None:
        self._clusters[model_name] = config

    async def stop_cluster(self, model_name: str) -> None:
        await asyncio.gather(*(self.undeploy(m, v) for m, v in self._keys() if m == model_name))
        self._clusters.pop(model_name, None)

    # -- versions ----------------------------------------------------------------------------

    def _keys(self) -> list[tuple[str, str]]:
        return [*self._slots, *self._shared]

    async def deploy(self, spec: VersionSpec) -> None:
        key = (spec.model_name, spec.version)
        if key in self._slots or key in self._shared:
            return
        cluster = self._clusters.get(spec.model_name)
        tags = cluster.tags if cluster else ()
        if share_workers(tags, self._settings.share_workers):
            self._deploy_shared(spec)
            return
        paths = WorkerPaths.for_version(self._data_dir, spec.model_name, spec.version)
        paths.log.parent.mkdir(parents=True, exist_ok=True)
        paths.socket.parent.mkdir(parents=True, exist_ok=True)
        slot = _Slot(spec, paths)
        self._slots[key] = slot
        slot.task = asyncio.create_task(self._supervise(slot), name=f"supervise {key}")

    def _batching(self, model_name: str) -> BatchSettings:
        cluster = self._clusters.get(model_name)
        return BatchSettings.from_tags(cluster.tags if cluster else ())

    def _deploy_shared(self, spec: VersionSpec) -> None:
        """Join the model's shared worker for this environment (started with its first)."""
        environment = str(spec.python) if spec.python is not None else "local"
        group = next(
            (g for (m, _), g in self._shared.items()
             if m == spec.model_name and g.environment == environment),
            None,
        )  # fmt: skip
        if group is None:
            paths = WorkerPaths.for_shared(self._data_dir, spec.model_name, environment)
            paths.socket.parent.mkdir(parents=True, exist_ok=True)
            group = SharedWorker(self._settings, paths, spec, environment, self._listener)
        self._shared[(spec.model_name, spec.version)] = group
        batching = partial(self._batching, spec.model_name)
        group.add(spec, self.log_file(spec.model_name, spec.version), batching)

    async def undeploy(self, model_name: str, version: str) -> None:
        group = self._shared.pop((model_name, version), None)
        if group is not None:
            await group.remove(version)
            return
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
        group = self._shared.get((model_name, version))
        if group is not None:
            return group.target(version)
        slot = self._slots.get((model_name, version))
        return slot.client if slot is not None and slot.state == READY else None

    def deployed(self, model_name: str) -> set[str]:
        return {v for m, v in self._keys() if m == model_name}

    def log_file(self, model_name: str, version: str) -> Path:
        path = WorkerPaths.for_version(self._data_dir, model_name, version).log
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def read_logs(self, model_name: str, version: str) -> str:
        path = WorkerPaths.for_version(self._data_dir, model_name, version).log
        own = read_tail(path, max_lines=2000, max_bytes=1024 * 1024)
        group = self._shared.get((model_name, version))
        return group.read_logs(version, own) if group is not None else own

    def worker_pid(self, model_name: str, version: str) -> int | None:
        group = self._shared.get((model_name, version))
        if group is not None:
            return group.pid
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
        adopted = slot.process  # serving already: watch it, restart it like any other
        restarted = adopted is not None
        while not slot.stopping.is_set():
            process = adopted or await self._launch(slot, failures, restarted)
            adopted = None
            if process is None:
                return
            if slot.state == READY:
                failures = 0
            code = await wait_exit(process, slot.client.ping, self._settings.orphan_timeout)
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

    async def _launch(self, slot: _Slot, failures: int, restarted: bool) -> ProcessHandle | None:
        """Start the worker and wait until it answers; None when it could not be started."""
        attempt = f" (attempt {failures + 1})" if failures else ""
        self._emit(slot, LAUNCHING, f"Loading the model{attempt}.")
        try:
            process = await self._spawn(slot)
        except (OSError, RegServeError) as exc:
            message = f"Could not start the worker: {exc}"
            self._emit(slot, FAILED, message, "VERSION_FAILED", message)
            return None
        if await self._wait_ready(slot, process):
            if restarted:
                text = f"Worker restarted (pid {process.pid}) and is serving again."
                self._emit(slot, READY, "Serving.", "WORKER_RESTARTED", text)
            else:
                text = f"Version {slot.spec.version} is ready (worker pid {process.pid})."
                self._emit(slot, READY, "Serving.", "VERSION_READY", text)
        return process

    async def _spawn(self, slot: _Slot) -> ProcessHandle:
        spec = slot.spec
        batching = self._batching(spec.model_name)
        args = ["--model-path", str(spec.model_path), "--name", spec.model_name,
                "--version", spec.version, *batching.worker_args()]  # fmt: skip
        record = WorkerRecord(0, 0, "", spec.model_name, "", env_key=spec.env_key,
                              version=spec.version, model_path=str(spec.model_path))  # fmt: skip
        process = await spawn_worker(
            str(spec.python or sys.executable),
            args,
            slot.paths,
            spec.worker_path if spec.python is not None else None,
            self._settings.log_max_bytes,
            record,
            self._settings.orphan_timeout,
        )
        slot.process = process
        _log.info("started worker pid %s for %s", process.pid, slot.label)
        return process

    async def _wait_ready(self, slot: _Slot, process: ProcessHandle) -> bool:
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
        await terminate(slot.process)
