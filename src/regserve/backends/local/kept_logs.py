"""The last log of every version that stopped being served, kept for reading.

A version's log is ``<data-dir>/logs/<model>/<version>.log`` on both backends. When a version
stops being served (archived or deleted in the registry, or serving disabled), its backend
calls :func:`keep` (the log is cut to its newest ``max_bytes``, its rotated ``.1`` goes) and
:func:`prune` (of the model's versions not served, only the ``count`` logs written last stay).
``get-version-logs`` and the UI read such a log with :func:`read_kept`. A model deleted in the
registry has its whole folder retired (``logs.py``), and :class:`KeptLog` says when a
log was last written, so that a log older than the registered model asked about (one deleted
while it was not served, and created again) is never shown as the new model's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from regserve.backends.local.logs import read_tail

__all__ = ["KeptLog", "keep", "log_times", "prune", "read_kept"]

_VERSION_LOG = re.compile(r"([0-9]{1,18})\.log")
"""A version's own log (not a warm process's or a shared worker's, not a rotated ``.1``)."""


@dataclass(frozen=True)
class KeptLog:
    """A log a version left."""

    text: str
    """Its newest lines."""
    modified_ms: int
    """When it was last written (ms since the epoch)."""


def keep(path: Path, max_bytes: int) -> None:
    """Cut a stopped version's log to its newest ``max_bytes`` (from a line's start) and
    remove its rotated ``.1``; no-op when there is no log."""
    path.with_name(path.name + ".1").unlink(missing_ok=True)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size <= max_bytes:
        return
    with path.open("rb") as f:
        f.seek(size - max_bytes)
        tail = f.read()
    tail = tail[tail.find(b"\n") + 1 :]  # the first line was cut mid-way
    temporary = path.with_name(f".{path.name}.kept")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(tail)
    stat = path.stat()
    os.utime(temporary, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # when it was written, still
    os.replace(temporary, path)


def prune(folder: Path, count: int, serving: set[str]) -> None:
    """Remove the logs of the versions not in ``serving`` but the ``count`` written last."""
    try:
        names = [p for p in folder.iterdir() if _version_of(p.name) not in (None, *serving)]
    except FileNotFoundError:
        return
    dated = []
    for path in names:
        try:
            dated.append((path.stat().st_mtime_ns, path))
        except FileNotFoundError:
            continue
    dated.sort(reverse=True)
    for _, path in dated[count:]:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".1").unlink(missing_ok=True)


def read_kept(folder: Path, version: str, max_lines: int, max_bytes: int) -> KeptLog | None:
    """The log ``version`` left in ``folder``; None when it left none (or ``version`` is not
    a version number: it is never a path)."""
    if _version_of(f"{version}.log") is None:
        return None
    path = folder / f"{version}.log"
    try:
        modified = path.stat().st_mtime_ns // 1_000_000
    except FileNotFoundError:
        return None
    return KeptLog(read_tail(path, max_lines=max_lines, max_bytes=max_bytes), modified)


def log_times(folder: Path) -> dict[str, int]:
    """The versions with a log in ``folder`` (served or kept), and when each was last written
    (ms since the epoch)."""
    times = {}
    try:
        paths = list(folder.iterdir())
    except FileNotFoundError:
        return {}
    for path in paths:
        version = _version_of(path.name)
        if version is None:
            continue
        try:
            times[version] = path.stat().st_mtime_ns // 1_000_000
        except FileNotFoundError:
            continue
    return times


def _version_of(name: str) -> str | None:
    found = _VERSION_LOG.fullmatch(name)
    return found.group(1) if found else None
