"""``<data-dir>/regserve.pid``: where ``regserve restart`` finds the process serving a data
dir."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_pidfile", "remove_pidfile", "write_pidfile"]

_PIDFILE = "regserve.pid"


def write_pidfile(data_dir: Path) -> None:
    """``<data-dir>/regserve.pid``: where ``regserve restart`` finds this process."""
    (data_dir / _PIDFILE).write_text(f"{os.getpid()}\n")


def remove_pidfile(data_dir: Path) -> None:
    path = data_dir / _PIDFILE
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def read_pidfile(data_dir: Path) -> int | None:
    """The pid of the regserve serving ``data_dir``, if it runs."""
    try:
        pid = int((data_dir / _PIDFILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"regserve" in cmdline else None
