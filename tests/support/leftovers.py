"""No process outlives pytest: every process a test starts is found and stopped at the end.

Processes the tests start leave pytest's process tree: regserve starts its workers in
sessions of their own, under other users, and they outlive a regserve killed with ``kill -9``
(by design: a restart adopts them). So the tree is not how they are found. Where this process
may create a cgroup (root, cgroup v1's ``freezer`` hierarchy, which regserve itself never
uses), pytest moves itself into a cgroup of its own at the start: every process started after
that, whatever its session, user or parent, stays in it. At the end the cgroup must be empty
but for pytest; what is left is frozen, killed and named in an error that fails the run.

Elsewhere (no such cgroup) the check falls back to pytest's own descendants.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

__all__ = ["ProcessGuard"]

_FREEZER = Path("/sys/fs/cgroup/freezer")


class ProcessGuard:
    """The processes started by this pytest session (see the module docstring)."""

    def __init__(self) -> None:
        self._me = os.getpid()
        self._cgroup = self._enter_cgroup()

    @property
    def how(self) -> str:
        return f"cgroup {self._cgroup}" if self._cgroup else "pytest's descendants"

    def leftovers(self) -> dict[int, str]:
        """The processes still running that the session started (pid -> command line)."""
        pids = self._cgroup_pids() if self._cgroup else _descendants(self._me)
        return {pid: _cmdline(pid) for pid in pids if pid != self._me and _running(pid)}

    def wait_and_stop(self, grace: float) -> dict[int, str]:
        """Give what is still shutting down ``grace`` seconds, then kill what is left: what
        was left (empty when the session cleaned up after itself)."""
        deadline = time.monotonic() + grace
        left = self.leftovers()
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = self.leftovers()
        if left:
            self._kill(left)
        return left

    def close(self) -> None:
        if self._cgroup is None:
            return
        with contextlib.suppress(OSError):
            (_FREEZER / "cgroup.procs").write_text(str(self._me))
        deadline = time.monotonic() + 5  # killed processes leave it once they are reaped
        while self._cgroup.exists() and time.monotonic() < deadline:
            try:
                self._cgroup.rmdir()
            except OSError:
                time.sleep(0.1)

    def _enter_cgroup(self) -> Path | None:
        cgroup = _FREEZER / f"regserve-tests-{self._me}"
        try:
            cgroup.mkdir(exist_ok=True)
            (cgroup / "cgroup.procs").write_text(str(self._me))
        except OSError:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
            return None
        return cgroup

    def _cgroup_pids(self) -> list[int]:
        assert self._cgroup is not None
        pids: list[int] = []
        for procs in self._cgroup.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids += [int(line) for line in procs.read_text().split()]
        return pids

    def _kill(self, left: dict[int, str]) -> None:
        state = self._cgroup / "freezer.state" if self._cgroup else None
        if state is not None:  # pytest itself leaves the cgroup first: it must not freeze
            try:
                (_FREEZER / "cgroup.procs").write_text(str(self._me))
            except OSError:
                state = None
        if state is not None:  # frozen, nothing forks while it is being killed
            with contextlib.suppress(OSError):
                state.write_text("FROZEN")
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if state is not None:
            with contextlib.suppress(OSError):
                state.write_text("THAWED")
        deadline = time.monotonic() + 10
        while self.leftovers() and time.monotonic() < deadline:
            for pid in self.leftovers():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            time.sleep(0.1)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie holds nothing but its pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
