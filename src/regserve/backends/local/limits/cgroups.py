"""Cluster limits as cgroups (v2, or v1 where that is what the machine has).

Every cluster's cgroup lives under regserve's OWN cgroup, so limits placed on regserve (a
container's, a service manager's) still hold for its workers:
``<mount>/<regserve's cgroup>/regserve/<data-dir hash>/<model>/g<generation>``, one per
controller on v1 (cpu, memory, and pids where it is mounted), one in all on v2. The pids
controller, where there is one, caps the cluster's processes and threads
(``REGSERVE_CLUSTER_MAX_PIDS``): a fork bomb stops there. A worker is written into it right after
it is spawned; the cluster's directory is removed when its last worker is gone.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from regserve.backends.local.limits.budget import Budget

__all__ = ["CgroupCluster", "CgroupHost", "find_cgroup_v1", "find_cgroup_v2"]

_log = logging.getLogger("regserve.limits")
_PERIOD_US = 100_000
_CONTROLLERS = ("cpu", "memory")
_OPTIONAL = ("pids",)
"""Used where the machine has it; limits are enforced without it."""


@dataclass(frozen=True)
class _Mount:
    point: Path
    root: str
    """The cgroup path the mount shows at its mount point (not "/" inside some containers)."""


def _mounts(fstype: str) -> dict[str, _Mount]:
    """cgroup mounts by controller (v1) or {"": mount} (v2), from /proc/self/mountinfo."""
    found: dict[str, _Mount] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3 or tail[0] != fstype:
                continue
            mount = _Mount(Path(fields[4]), fields[3])
            if fstype == "cgroup2":
                found.setdefault("", mount)
                continue
            for option in tail[2].split(","):
                found.setdefault(option, mount)
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path by controller ("" for v2), from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _own_dir(mount: _Mount, own: str) -> Path:
    relative = own[len(mount.root) :] if own.startswith(mount.root) else own
    return mount.point / relative.lstrip("/")


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def find_cgroup_v1(key: str) -> CgroupHost | None:
    """cgroup v1 cpu and memory controllers regserve may create cgroups in, or None."""
    mounts, own = _mounts("cgroup"), _own_paths()
    if not all(c in mounts and c in own for c in _CONTROLLERS):
        return None
    used = [*_CONTROLLERS, *(c for c in _OPTIONAL if c in mounts and c in own)]
    bases = {c: _own_dir(mounts[c], own[c]) / "regserve" / key for c in used}
    try:
        for base in bases.values():
            base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _log.info("cgroup v1 is mounted but not writable here (%s)", exc)
        return None
    return CgroupHost("cgroup v1", bases, v2=False)


def find_cgroup_v2(key: str) -> CgroupHost | None:
    """A cgroup v2 subtree with cpu and memory delegated to regserve, or None.

    Controllers can be enabled for children only where the cgroup holds no process, so this
    works where regserve runs at the root of its cgroup namespace (a container) or in a
    cgroup that already delegates cpu and memory to its children.
    """
    mount, own = _mounts("cgroup2").get(""), _own_paths().get("")
    if mount is None or own is None:
        return None
    here = _own_dir(mount, own)
    try:
        offered = set((here / "cgroup.controllers").read_text().split())
        if not set(_CONTROLLERS) <= offered:
            return None
        base = here / "regserve" / key
        _enable_down(here, base, [*_CONTROLLERS, *(c for c in _OPTIONAL if c in offered)])
    except OSError as exc:
        _log.info("cgroup v2 is mounted but cpu and memory are not delegated here (%s)", exc)
        return None
    return CgroupHost("cgroup v2", {"": base}, v2=True)


def _enable_down(top: Path, leaf_parent: Path, controllers: list[str]) -> None:
    """Create ``leaf_parent`` and enable ``controllers`` for the children of every level."""
    enable = " ".join(f"+{c}" for c in controllers)
    level = top
    for part in (None, *leaf_parent.relative_to(top).parts):
        if part is not None:
            level = level / part
            level.mkdir(exist_ok=True)
        if not set(controllers) <= set((level / "cgroup.subtree_control").read_text().split()):
            _write(level / "cgroup.subtree_control", enable)


class CgroupHost:
    """Where clusters' cgroups are made: one base directory per controller (one on v2)."""

    def __init__(self, name: str, bases: dict[str, Path], *, v2: bool) -> None:
        self.name = name
        self.bases = bases
        self.v2 = v2

    def describe(self) -> str:
        where = ", ".join(f"{c or 'all'}: {p}" for c, p in self.bases.items())
        return f"{self.name} ({where})"

    def create(self, model_dir: str, generation: int, budget: Budget) -> CgroupCluster:
        dirs = {c: base / model_dir / f"g{generation}" for c, base in self.bases.items()}
        if self.v2:
            top = self.bases[""]
            offered = set((top / "cgroup.subtree_control").read_text().split())
            _enable_down(
                top, dirs[""].parent, [c for c in (*_CONTROLLERS, *_OPTIONAL) if c in offered]
            )
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)  # exist_ok: workers kept across a restart
        cluster = CgroupCluster(self.name, dirs, budget, v2=self.v2)
        cluster.apply()
        return cluster

    def remove_bases(self) -> None:
        """Remove this data dir's directories (and ``regserve/``) once nothing is left in them."""
        for base in self.bases.values():
            if _rmdir(base):
                _rmdir(base.parent)

    def clean_stale(self) -> int:
        """Remove the empty cgroups a previous regserve process left; how many were removed."""
        removed = 0
        for base in self.bases.values():
            for path in sorted(base.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                if path != base and _rmdir(path):
                    removed += 1
        return removed


class CgroupCluster:
    """One cluster generation's cgroup (one directory per controller on v1)."""

    def __init__(self, name: str, dirs: dict[str, Path], budget: Budget, *, v2: bool) -> None:
        self.budget = budget
        self.dirs = dirs
        self._name = name
        self._v2 = v2
        self._oom_counted = self._oom_kills()
        """OOM kills already explained (or there before this process started)."""

    @property
    def summary(self) -> str:
        pids = f", at most {self.budget.max_pids} processes" if self._pids_file() else ""
        return (
            f"{self._name}, {self.budget.describe_cores()}, {self.budget.describe_memory()}{pids}"
        )

    def _pids_file(self) -> Path | None:
        """Where the cluster's process cap is written (None: no pids controller here)."""
        if self.budget.max_pids is None:
            return None
        directory = self.dirs[""] if self._v2 else self.dirs.get("pids")
        path = directory / "pids.max" if directory is not None else None
        return path if path is not None and path.exists() else None

    @property
    def _memory_dir(self) -> Path:
        return self.dirs[""] if self._v2 else self.dirs["memory"]

    def apply(self) -> None:
        """Write the budget's limits (on a new cgroup, or over those of a kept one)."""
        cores, memory = self.budget.cores, self.budget.memory_bytes
        pids = self._pids_file()
        if pids is not None:
            _write(pids, str(self.budget.max_pids))
        if self._v2:
            quota = f"{round(cores * _PERIOD_US)} {_PERIOD_US}" if cores else f"max {_PERIOD_US}"
            _write(self.dirs[""] / "cpu.max", quota)
            _write(self.dirs[""] / "memory.max", str(memory) if memory else "max")
            with contextlib.suppress(FileNotFoundError):  # no swap accounting: nothing to cap
                _write(self.dirs[""] / "memory.swap.max", "0" if memory else "max")
            return
        _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(_PERIOD_US))
        _write(
            self.dirs["cpu"] / "cpu.cfs_quota_us", str(round(cores * _PERIOD_US) if cores else -1)
        )
        self._apply_v1_memory(memory if memory else -1)

    def _apply_v1_memory(self, limit: int) -> None:
        # memsw (memory + swap) may never be below the memory limit: raising, it goes first;
        # lowering, it goes last. Either order may be the one that works for a kept cgroup.
        memsw = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
        plain = self.dirs["memory"] / "memory.limit_in_bytes"
        files = [plain, memsw] if memsw.exists() else [plain]
        try:
            for path in files:
                _write(path, str(limit))
        except OSError:
            for path in reversed(files):
                _write(path, str(limit))

    def place(self, pid: int) -> None:
        for path in self.dirs.values():
            _write(path / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.dirs.values():
            with contextlib.suppress(OSError):
                found |= {int(p) for p in (path / "cgroup.procs").read_text().split()}
        return found

    def _oom_kills(self) -> int:
        """The kernel's count of processes it killed for this cgroup's memory limit."""
        name = "memory.events" if self._v2 else "memory.oom_control"
        try:
            text = (self._memory_dir / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def explain_exit(self, pid: int, returncode: int | None, log_tail: str = "") -> str | None:
        # The counter says how many were killed, not which: each SIGKILLed exit takes one.
        if returncode != -signal.SIGKILL or self.budget.memory_bytes is None:
            return None
        if self._oom_kills() <= self._oom_counted:
            return None
        self._oom_counted += 1
        return f"was killed: {self.budget.oom_message()}"

    def close(self) -> bool:
        removed = True
        for path in self.dirs.values():
            removed = _rmdir(path, attempts=20) and removed
            _rmdir(path.parent)  # the model's directory, once its last generation is gone
        return removed


def _rmdir(path: Path, attempts: int = 1) -> bool:
    """Remove a cgroup directory; False while processes are still in it (EBUSY)."""
    for attempt in range(attempts):
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == attempts - 1:
                return False
            time.sleep(0.05)  # an exited worker leaves its cgroup a moment after it is reaped
    return False
