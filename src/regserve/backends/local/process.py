"""Starting, stopping and reaping local worker processes (one-version and shared alike).

A worker runs in its own session (a terminal's Ctrl-C and regserve's death do not reach it) and
outlives regserve: its record (:mod:`.worker_records`) lets the next regserve process adopt
it, and it exits by itself once no supervisor has been connected for ``--orphan-timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from regserve.backends.local.logs import rotate_if_large
from regserve.backends.local.paths import WorkerPaths
from regserve.backends.local.worker_records import (
    WorkerRecord,
    is_running,
    process_start_time,
    read_records,
    remove_record,
    write_record,
)
from regserve.errors import RegServeError
from regserve.sandbox import Sandbox
from regserve.worker.exits import EXIT_MODEL_LOAD_FAILED, EXIT_SANDBOX_FAILED

__all__ = [
    "UNKNOWN_EXIT",
    "ProcessHandle",
    "WorkerProcess",
    "describe_exit",
    "find_leftovers",
    "forked_worker",
    "spawn_worker",
    "stop_pid",
    "terminate",
    "wait_exit",
    "worker_argv",
]

_log = logging.getLogger("regserve.supervisor")
_STOP_GRACE = 15.0
_KEEPALIVE_MAX = 30.0
UNKNOWN_EXIT = 1000
"""The exit code of an adopted worker that is not our child: its status is not ours to read."""
_ASK_EXIT_TIMEOUT = 5.0

ExitStatus = Callable[[int], Awaitable[int | None]]
"""How the process ``pid`` ended, asked of its parent (None: unknown)."""


class ProcessHandle(Protocol):
    """A worker process: one this process spawned, or one it adopted."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is not running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    if code == EXIT_MODEL_LOAD_FAILED:
        return f"exited with code {code} (the model could not be loaded)"
    if code == EXIT_SANDBOX_FAILED:
        return f"exited with code {code} (it could not be started in its sandbox; the log says why)"
    if code == UNKNOWN_EXIT:
        return "exited (its exit status is unknown: the worker was not started by this process)"
    return f"exited with code {code}"


async def spawn_worker(
    python: str,
    args: list[str],
    paths: WorkerPaths,
    pythonpath: Path | None,
    log_max_bytes: int,
    record: WorkerRecord | None,
    orphan_timeout: float,
    sandbox: Sandbox,
    place: Callable[[int], None] | None = None,
) -> WorkerProcess:
    """``python -m regserve.worker --socket <paths.socket> *args``, output appended to the log,
    in its own session (a terminal's Ctrl-C does not reach it), in the model's ``sandbox``
    (its user, its environment: nothing of regserve's), recorded for adoption in
    ``paths.pidfile`` (``record`` completed with the pid and its start time; None: a process
    that is not adopted, a template); ``place`` puts it under its cluster's limits right away
    (limits.ResourceLimits.place)."""
    rotate_if_large(paths.log, log_max_bytes)
    paths.socket.unlink(missing_ok=True)
    sandbox.prepare(paths.socket.parent)
    env = sandbox.environment(Path(python).parent, pythonpath)
    argv = [python, "-m", "regserve.worker", *worker_argv(paths, orphan_timeout, sandbox, args)]
    pid = _start(sandbox.command(argv), env, paths.log)
    if place is not None:  # node type limits (backends/local/limits)
        place(pid)
    completed = dataclasses.replace(
        record or WorkerRecord(0, 0, "", "", ""),
        pid=pid,
        start_time=process_start_time(pid) or 0,
        socket=str(paths.socket),
        python=python,
        pythonpath=str(pythonpath) if pythonpath else None,
        created_at=time.time(),
    )
    if record is not None:
        write_record(paths.pidfile, completed)
    return WorkerProcess(completed)


def worker_argv(
    paths: WorkerPaths, orphan_timeout: float, sandbox: Sandbox, args: list[str]
) -> list[str]:
    """The arguments of ``python -m regserve.worker`` serving on ``paths.socket``."""
    return [
        "--socket",
        str(paths.socket),
        "--orphan-timeout",
        f"{orphan_timeout:g}",
        "--peer-uid",
        str(sandbox.peer_uid),
        *args,
    ]


def forked_worker(
    pid: int,
    paths: WorkerPaths,
    template: WorkerRecord,
    record: WorkerRecord,
    place: Callable[[int], None] | None = None,
    exit_status: ExitStatus | None = None,
) -> WorkerProcess:
    """A process another forked: a replica a template worker forked
    (:mod:`regserve.worker.template`), or a template a warm process forked
    (:mod:`regserve.worker.warm`), recorded for adoption like a spawned worker: it runs its
    parent's interpreter and command line (which names the parent's socket, or, for a standby
    or a template forked from a warm process, the socket of the process the chain started
    with: ``origin``). ``exit_status``: how it ended, asked of its parent."""
    if place is not None:
        place(pid)
    completed = dataclasses.replace(
        record,
        pid=pid,
        start_time=process_start_time(pid) or 0,
        socket=str(paths.socket),
        python=template.python,
        pythonpath=template.pythonpath,
        created_at=time.time(),
        forked_from=template.socket,
        origin=template.origin or template.forked_from,
    )
    write_record(paths.pidfile, completed)
    return WorkerProcess(completed, exit_status)


def _start(argv: list[str], env: dict[str, str], log_path: Path) -> int:
    """posix_spawn ``argv`` in a new session, stdin from /dev/null, output to ``log_path``.

    Not asyncio's subprocesses: their transports kill the child when they are closed or
    collected, and a worker must outlive this process (to be adopted by the next one).
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as log, open(os.devnull, "rb") as null:
        actions = [
            (os.POSIX_SPAWN_DUP2, null.fileno(), 0),
            (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
        ]
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)


async def wait_exit(
    process: ProcessHandle, keepalive: Callable[[], Awaitable[object]], orphan_timeout: float
) -> int:
    """Wait for the worker to exit; meanwhile ``keepalive`` (a PING on the supervisor's
    connection) every quarter of the orphan timeout, so that a connection lost for any reason
    is made again before the worker takes itself for an orphan."""
    interval = min(orphan_timeout / 4, _KEEPALIVE_MAX) if orphan_timeout > 0 else _KEEPALIVE_MAX
    exited = asyncio.ensure_future(process.wait())
    try:
        while True:
            done, _ = await asyncio.wait({exited}, timeout=interval)
            if done:
                return exited.result()
            with contextlib.suppress(RegServeError, OSError, ValueError):
                await keepalive()
    finally:
        exited.cancel()


async def terminate(process: ProcessHandle | None) -> None:
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


def find_leftovers(run_dir: Path) -> list[tuple[Path, WorkerRecord]]:
    """The workers a previous regserve process left running, by their records.

    Records of processes that are gone (or whose pid now belongs to another process) are
    removed; workers recorded in an older, unreadable format are stopped (SIGKILL).
    """
    alive: list[tuple[Path, WorkerRecord]] = []
    for path, record in read_records(run_dir):
        if record is None:
            _reap_legacy(path)
        elif is_running(record):
            alive.append((path, record))
        else:
            _log.info("the %s is gone; dropping its record", record.describe())
            remove_record(path)
    return alive


def stop_pid(record: WorkerRecord) -> None:
    """SIGKILL a recorded worker if it is still that process (not a reused pid)."""
    if is_running(record):
        _log.info("stopping the %s left by a previous run", record.describe())
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
        _reap_child(record.pid)


def _reap_legacy(pidfile: Path) -> None:
    """A pid file of an older regserve: stop its worker as regserve used to."""
    try:
        info = json.loads(pidfile.read_text())
        pid = int(info["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"regserve.worker" in cmdline and str(info["socket"]).encode() in cmdline:
            _log.info("stopping worker pid %s left by a previous run", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    pidfile.unlink(missing_ok=True)


def _reap_child(pid: int) -> int | None:
    """Collect ``pid``'s exit status if it is our child (it is, after a re-exec); else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None


class WorkerProcess:
    """A worker process, started by this regserve process or adopted from a previous one,
    watched through a pidfd (Linux >= 5.3; else by polling /proc). Quacks like
    :class:`asyncio.subprocess.Process`: ``pid``, ``returncode``, ``wait``, ``terminate``,
    ``kill``. Its exit code is known when it is our child, else ``exit_status`` (its parent,
    asked: a template forked from a warm process) tells it, else it is ``UNKNOWN_EXIT``."""

    _POLL = 0.2

    def __init__(self, record: WorkerRecord, exit_status: ExitStatus | None = None) -> None:
        self._record = record
        self._exit_status = exit_status
        self._asking: asyncio.Task[None] | None = None
        self._returncode: int | None = None
        self._pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(record.pid)
        self._exited = asyncio.Event()
        if self._pidfd is not None:
            asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)
        else:
            asyncio.get_running_loop().create_task(self._poll())

    @property
    def pid(self) -> int:
        return self._record.pid

    @property
    def record(self) -> WorkerRecord:
        return self._record

    def update_record(self, path: Path, **changes: object) -> None:
        """Rewrite the worker's record with ``changes`` (a shared worker's loaded versions)."""
        self._record = dataclasses.replace(self._record, **changes)  # type: ignore[arg-type]
        write_record(path, self._record)

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._returncode is not None
        return self._returncode

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self._returncode is not None:
            return
        if self._pidfd is not None:  # no pid-reuse race: the pidfd names this very process
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)
        elif is_running(self._record):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def _on_exit(self) -> None:
        assert self._pidfd is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        self._finish()

    async def _poll(self) -> None:
        while is_running(self._record):  # no event to wait for without a pidfd  # noqa: ASYNC110
            await asyncio.sleep(self._POLL)
        self._finish()

    def _finish(self) -> None:
        code = _reap_child(self.pid)
        if code is None and self._exit_status is not None:
            self._asking = asyncio.get_running_loop().create_task(self._ask_exit(self._exit_status))
            return
        self._set_exit(code)

    async def _ask_exit(self, exit_status: ExitStatus) -> None:
        code: int | None = None
        with contextlib.suppress(Exception):  # its parent gone or out of step: unknown
            code = await asyncio.wait_for(exit_status(self.pid), _ASK_EXIT_TIMEOUT)
        self._set_exit(code)

    def _set_exit(self, code: int | None) -> None:
        self._returncode = UNKNOWN_EXIT if code is None else code
        self._exited.set()
