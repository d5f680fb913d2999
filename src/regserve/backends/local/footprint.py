"""How much memory a worker process really holds: its PSS, from ``/proc`` (Linux).

RSS counts a page shared by several processes in each of them; PSS (proportional set size)
divides it among them, so the PSS of a version's template and the replicas forked from it adds
up to what they hold together, and the sum over every worker is what the machine gives them.
Where ``smaps_rollup`` cannot be read (a kernel before 4.14, or a worker of another user that
regserve may not trace) the process's RSS stands in (an overcount for forked processes).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["pss_bytes"]

_PROC = Path("/proc")


def pss_bytes(pid: int) -> int:
    """The process's PSS in bytes (its RSS where PSS cannot be read; 0 when it is gone)."""
    found = _kib_field(_PROC / str(pid) / "smaps_rollup", "Pss:")
    if found is None:
        found = _kib_field(_PROC / str(pid) / "status", "VmRSS:")
    return (found or 0) * 1024


def _kib_field(path: Path, key: str) -> int | None:
    """The ``key: N kB`` line's N in a /proc file; None when it cannot be read."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return None
