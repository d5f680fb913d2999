"""Per-version worker log files: rotation at start and reading the tail."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

__all__ = ["note", "read_tail", "retire_logs", "rotate_if_large"]


def note(path: Path, text: str) -> None:
    """A supervisor line in a version's log, between its workers' own lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{stamp} INFO regserve.supervisor: {text}\n")


def retire_logs(data_dir: Path, model_name: str) -> None:
    """A deleted model's logs leave ``logs/<model>/`` for ``logs/.deleted/<time>-<model>/``:
    kept on disk for the administrator, never shown for a model created under the name later."""
    folder = data_dir / "logs" / quote(model_name, safe="")
    if not folder.is_dir():
        return
    graveyard = data_dir / "logs" / ".deleted"
    graveyard.mkdir(mode=0o700, exist_ok=True)
    os.replace(folder, graveyard / f"{time.strftime('%Y%m%dT%H%M%S')}-{folder.name}")


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
