"""Worker records: what a running worker is, written beside its socket, so that the next
regserve process (after a restart, a ``kill -9`` or a leader change) can find and adopt it.

A record is a small JSON file, written atomically (a temporary file renamed into place) when
the worker is started and removed when it is stopped on purpose. It is keyed by the worker's
socket path (one file per worker, named after the socket), never by (model, version): a
version may run in several workers (replicas, generations) and a shared worker runs several
versions. A record is trusted only when its process is still the one that was started: the
same pid *and* the same kernel start time (``/proc/<pid>/stat``), which guards against pid
reuse, and a command line naming its socket (or, for a replica forked from a template, the
template's control socket; for a process forked from a forked one, the socket of the process
its chain started with).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from regserve.worker.text import log_safe

__all__ = [
    "WorkerRecord",
    "is_running",
    "process_start_time",
    "read_record",
    "read_records",
    "remove_record",
    "write_record",
]

_log = logging.getLogger("regserve.supervisor")
_RECORD_FORMAT = 1


@dataclass(frozen=True)
class WorkerRecord:
    """One running worker process, as its supervisor started it."""

    pid: int
    start_time: int
    """The process's start time in clock ticks after boot (field 22 of /proc/<pid>/stat)."""
    socket: str
    model_name: str
    python: str
    """The interpreter it runs with."""
    pythonpath: str | None = None
    """Where the worker package came from for a model's own environment (else None)."""
    env_key: str | None = None
    """The environment it runs in (``--env-manager virtualenv``); None under ``local``."""
    version: str | None = None
    """The version it serves; None for a shared worker (see ``versions``)."""
    model_path: str | None = None
    shared: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    """A shared worker's loaded versions: version -> model path."""
    replica: int | None = None
    generation: int | None = None
    forked_from: str | None = None
    """The control socket of the template it was forked from (its command line is the
    template's, naming that socket); None for a worker started as its own process."""
    created_at: float = 0.0
    origin: str | None = None
    """The socket its command line names when that is neither ``socket`` nor ``forked_from``:
    a process forked from one that was forked itself (a replica of a standby, or of a template
    forked from a warm process) runs the command line of the process its chain started with."""
    template_protocol: int | None = None
    """What a template's control socket speaks (``wire.TEMPLATE_PROTOCOL``); None for a worker,
    and for a template started before templates spoke wire frames."""
    warm_protocol: int | None = None
    """What a warm process's control socket speaks (``wire.WARM_PROTOCOL``); None for others."""
    format: int = _RECORD_FORMAT

    def describe(self) -> str:
        model = log_safe(self.model_name)  # written into log lines
        if self.shared:
            what = f"shared worker of '{model}'"
        elif self.warm_protocol is not None:
            what = f"warm process of '{model}'"
        else:
            what = f"worker of version {log_safe(self.version)} of '{model}'"
        return f"{what} (pid {self.pid})"


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot), or None if there is none."""
    stat = _stat(pid)
    return int(stat[19]) if stat else None


def _stat(pid: int) -> list[str]:
    """Fields 3... of /proc/<pid>/stat (state first), or [] when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    return stat[stat.rfind(")") + 2 :].split()


def is_running(record: WorkerRecord) -> bool:
    """Is the record's process still the worker that was started (not a reused pid)?"""
    stat = _stat(record.pid)
    # A zombie ("Z") has exited: only its exit status is left.
    if not stat or stat[0] == "Z" or int(stat[19]) != record.start_time:
        return False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except OSError:
        return False
    named = record.origin or record.forked_from or record.socket
    return b"regserve.worker" in cmdline and named.encode() in cmdline


def write_record(path: Path, record: WorkerRecord) -> None:
    """Write ``record`` to ``path`` atomically (never a half-written file)."""
    data = asdict(record)
    data["created_at"] = record.created_at or time.time()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def remove_record(path: Path) -> None:
    path.unlink(missing_ok=True)


def read_records(run_dir: Path) -> list[tuple[Path, WorkerRecord | None]]:
    """Every record file in ``run_dir`` and what it holds (None when it cannot be read)."""
    found: list[tuple[Path, WorkerRecord | None]] = []
    for path in sorted(run_dir.glob("*.pid")):
        found.append((path, _parse(path)))
    for tmp in run_dir.glob(".*.tmp"):  # a writer killed between write and rename
        with contextlib.suppress(OSError):
            tmp.unlink()
    return found


def read_record(path: Path) -> WorkerRecord | None:
    """The record at ``path`` (None when there is none or it cannot be read)."""
    return _parse(path) if path.exists() else None


def _parse(path: Path) -> WorkerRecord | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        if data.get("format") != _RECORD_FORMAT:
            return None
        data["versions"] = {str(k): str(v) for k, v in data.get("versions", {}).items()}
        return WorkerRecord(**data)
    except (OSError, ValueError, TypeError) as exc:
        _log.info("ignoring the unreadable worker record %s (%s)", path, exc)
        return None
