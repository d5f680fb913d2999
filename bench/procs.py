"""Processes the bench starts: a process tree's members and their memory (from /proc).

RSS counts a page shared by several processes in each of them; PSS divides it among them, so
the PSS of a process tree adds up to what it really holds (replicas forked from a template
share most of their pages with it)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["children", "cmdline", "descendants", "parent", "pss_mb", "rss_mb"]


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    stack = children(pid)
    while stack:
        child = stack.pop()
        out.append(child)
        stack += children(child)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_mb(pid: int) -> float:
    """Resident set size in MiB (0 when the process is gone)."""
    return _kib_field(f"/proc/{pid}/status", "VmRSS:") / 1024


def pss_mb(pid: int) -> float:
    """Proportional set size in MiB (0 when the process is gone)."""
    return _kib_field(f"/proc/{pid}/smaps_rollup", "Pss:") / 1024


def _kib_field(path: str, key: str) -> int:
    """The ``key: N kB`` line's N in a /proc file (0 when there is none)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def parent(pid: int) -> int | None:
    """The parent's pid (None when the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])
