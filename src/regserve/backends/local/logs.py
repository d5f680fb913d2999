"""Per-version worker log files: rotation at start and reading the tail."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_tail", "rotate_if_large"]


def rotate_if_large(path: Path, max_bytes: int) -> None:
    """Keep one previous file (``.1``) when the log has grown past ``max_bytes``."""
    try:
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def read_tail(path: Path, max_lines: int = 200, max_bytes: int = 256 * 1024) -> str:
    """The last lines of a log file (empty when it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first line was cut mid-way
    return "\n".join(lines[-max_lines:])
