"""Node type limits against this machine's real cgroups and real processes.

The cgroup tests need writable cgroups (root on Linux, cgroup v1 or a delegated v2); where
there are none they skip, which CI (REGSERVE_TEST_REQUIRE_SERVICES) turns into a failure:
the CI machine is this one, and it has them.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regserve.backends.local.limits import LimitsUnavailableError, ResourceLimits
from regserve.backends.local.limits.cgroups import CgroupCluster
from regserve.nodes import NodeType, NodeTypes
from tests.conftest import require_service

MIB = 1024 * 1024
TYPES = NodeTypes(
    [
        NodeType("local-default", None, None, "the machine"),
        NodeType("tiny", 0.5, 100, "100 MB Memory, 0.5 Cores"),
        NodeType("small", 1, 200, "200 MB Memory, 1 Cores"),
        NodeType("sliver", 0.1, 100, "100 MB Memory, 0.1 Cores"),
    ]
)
IDLE = "import sys; sys.stdin.read()"
HOG = "import sys; sys.stdin.readline(); b = b'x' * (300 * 1024 * 1024); print('survived')"


class Children:
    """Real child processes, killed at the end of the test."""

    def __init__(self) -> None:
        self.all: list[subprocess.Popen[str]] = []

    def start(self, code: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.all.append(child)
        return child

    def close(self) -> None:
        for child in self.all:
            if child.poll() is None:
                child.kill()
            child.communicate()


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    yield kids
    kids.close()


@pytest.fixture
def cgroup_limits(tmp_path: Path, children: Children) -> Iterator[ResourceLimits]:
    limits = ResourceLimits(TYPES, tmp_path, "auto", max_pids=64)
    limits.start()
    if not limits.mechanism.startswith("cgroup"):
        require_service(f"no writable cgroups here (the limits fall back to {limits.mechanism})")
    yield limits
    children.close()
    limits.close()


def _cgroup(limits: ResourceLimits, model: str) -> CgroupCluster:
    cluster = limits.current(model)
    assert isinstance(cluster, CgroupCluster)
    return cluster


def _read(cluster: CgroupCluster, controller: str, name: str) -> str:
    directory = cluster.dirs.get(controller) or cluster.dirs[""]
    return (directory / name).read_text().strip()


def test_a_clusters_workers_share_one_cgroup_with_the_node_types_limits(
    cgroup_limits: ResourceLimits, children: Children
) -> None:
    limits = cgroup_limits.open("fraud/model", "tiny")
    assert ", 0.5 cores, 100 MiB" in limits.summary
    workers = [children.start(IDLE), children.start(IDLE)]
    for worker in workers:
        cgroup_limits.place("fraud/model", worker.pid)
    assert limits.pids() == {w.pid for w in workers}
    cluster = _cgroup(cgroup_limits, "fraud/model")
    for path in cluster.dirs.values():
        assert path.name == "g1"
        assert path.parent.name == "m-fraud%2Fmodel"
        assert f"{os.getpid()}" not in (path / "cgroup.procs").read_text().split()
    if "" in cluster.dirs:  # cgroup v2
        assert _read(cluster, "", "cpu.max") == "50000 100000"
        assert _read(cluster, "", "memory.max") == str(100 * MIB)
    else:
        assert _read(cluster, "cpu", "cpu.cfs_quota_us") == "50000"
        assert _read(cluster, "cpu", "cpu.cfs_period_us") == "100000"
        assert _read(cluster, "memory", "memory.limit_in_bytes") == str(100 * MIB)
    pids_dir = cluster.dirs.get("pids") or cluster.dirs.get("")
    if pids_dir is not None and (pids_dir / "pids.max").exists():  # the pids controller is here
        assert (pids_dir / "pids.max").read_text().strip() == "64"
        assert limits.summary.endswith(", at most 64 processes")
    children.close()
    cgroup_limits.release("fraud/model")
    assert not any(path.exists() for path in cluster.dirs.values())
    assert not any(path.parent.exists() for path in cluster.dirs.values())


def test_a_worker_over_the_memory_limit_is_killed_and_the_limit_named(
    cgroup_limits: ResourceLimits, children: Children
) -> None:
    cgroup_limits.open("hog", "tiny")
    hog = children.start(HOG)
    cgroup_limits.place("hog", hog.pid)
    output, _ = hog.communicate("go\n", timeout=60)
    assert hog.returncode == -signal.SIGKILL
    assert "survived" not in output
    assert cgroup_limits.explain_exit("hog", hog.pid, hog.returncode) == (
        "was killed: the cluster used its 100 MiB memory limit (node type tiny)"
    )
    # One OOM kill explains one exit: a later kill -9 by someone else is not blamed on it.
    idle = children.start(IDLE)
    cgroup_limits.place("hog", idle.pid)
    idle.kill()
    idle.wait()
    assert cgroup_limits.explain_exit("hog", idle.pid, idle.returncode) is None


def test_the_cpu_quota_throttles_the_cluster(
    cgroup_limits: ResourceLimits, children: Children
) -> None:
    # A tenth of a core; the loop runs until it has had 0.2 s of CPU (2 s at best), so it
    # asks for more than its share whatever else this machine's cores are doing.
    cgroup_limits.open("busy", "sliver")
    busy = children.start(
        "import sys, time\nsys.stdin.readline()\nwhile time.process_time() < 0.2: pass\n"
    )
    cgroup_limits.place("busy", busy.pid)
    busy.communicate("go\n", timeout=30)
    cluster = _cgroup(cgroup_limits, "busy")
    stat = dict(line.split() for line in _read(cluster, "cpu", "cpu.stat").splitlines())
    assert int(stat["nr_throttled"]) > 0, stat


def test_a_node_type_change_opens_a_new_generation_and_the_old_closes_when_empty(
    cgroup_limits: ResourceLimits, children: Children
) -> None:
    cgroup_limits.open("m", "tiny")
    old_worker = children.start(IDLE)
    cgroup_limits.place("m", old_worker.pid)
    old = _cgroup(cgroup_limits, "m")
    cgroup_limits.open("m", "small")
    new = _cgroup(cgroup_limits, "m")
    assert [p.name for p in new.dirs.values()] == ["g2"] * len(new.dirs)
    new_worker = children.start(IDLE)
    cgroup_limits.place("m", new_worker.pid)
    assert new.pids() == {new_worker.pid}
    assert old.pids() == {old_worker.pid}
    assert all(p.exists() for p in old.dirs.values())  # still holds its worker
    old_worker.kill()
    old_worker.wait()
    assert cgroup_limits.explain_exit("m", old_worker.pid, old_worker.returncode) is None
    assert not any(p.exists() for p in old.dirs.values())


def test_cgroups_left_by_a_previous_process_are_removed_at_start_unless_busy(
    tmp_path: Path, cgroup_limits: ResourceLimits, children: Children
) -> None:
    cgroup_limits.open("empty", "tiny")
    cgroup_limits.open("busy", "tiny")
    worker = children.start(IDLE)
    cgroup_limits.place("busy", worker.pid)
    empty, busy = _cgroup(cgroup_limits, "empty"), _cgroup(cgroup_limits, "busy")
    # regserve was killed: a new process on the same data dir starts without releasing them.
    ResourceLimits(TYPES, tmp_path, "auto").start()
    assert not any(p.exists() for p in empty.dirs.values())
    assert all(p.exists() for p in busy.dirs.values())  # a worker that outlived regserve


def test_local_default_sets_no_limits(cgroup_limits: ResourceLimits, children: Children) -> None:
    limits = cgroup_limits.open("m", "local-default")
    assert limits.summary == "no limits (local-default is the whole machine)"
    worker = children.start(IDLE)
    cgroup_limits.place("m", worker.pid)
    assert limits.pids() == set()


def test_without_cgroups_workers_are_pinned_and_memory_capped_per_process(
    tmp_path: Path, children: Children
) -> None:
    limits = ResourceLimits(TYPES, tmp_path, "process")
    limits.start()
    cluster = limits.open("m", "tiny")
    assert cluster.summary.startswith("CPU affinity and process limits, pinned to 1 of ")
    assert cluster.summary.endswith(", 100 MiB per worker (RLIMIT_DATA)")
    hog = children.start(HOG)
    limits.place("m", hog.pid)
    assert len(os.sched_getaffinity(hog.pid)) == 1
    assert resource.prlimit(hog.pid, resource.RLIMIT_DATA) == (100 * MIB, 100 * MIB)
    output, _ = hog.communicate("go\n", timeout=60)
    assert "MemoryError" in output
    assert hog.returncode == 1
    assert limits.explain_exit("m", hog.pid, hog.returncode, output) == (
        "ran out of memory: the worker used its 100 MiB memory limit (node type tiny), per process"
    )
    assert limits.explain_exit("m", hog.pid, 1, "ValueError: bad") is None


def test_limits_switched_off_set_none(tmp_path: Path) -> None:
    limits = ResourceLimits(TYPES, tmp_path, "off")
    limits.start()
    assert limits.open("m", "tiny").summary.startswith("no limits (REGSERVE_RESOURCE_LIMITS=off")


def test_asking_for_a_mechanism_this_machine_lacks_fails_at_start(tmp_path: Path) -> None:
    if ResourceLimits(TYPES, tmp_path, "auto").probe() == "cgroup v2":
        pytest.skip("this machine has cgroup v2 with cpu and memory delegated")
    with pytest.raises(LimitsUnavailableError, match="REGSERVE_RESOURCE_LIMITS asks for cgroup v2"):
        ResourceLimits(TYPES, tmp_path, "cgroup2").start()


def test_a_worker_killed_by_someone_else_is_not_blamed_on_the_limits(
    cgroup_limits: ResourceLimits, children: Children
) -> None:
    cgroup_limits.open("m", "tiny")
    worker = children.start(IDLE)
    cgroup_limits.place("m", worker.pid)
    time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert cgroup_limits.explain_exit("m", worker.pid, worker.returncode) is None


def test_stopping_regserve_leaves_no_cgroup_directory(
    tmp_path: Path, cgroup_limits: ResourceLimits, children: Children
) -> None:
    cgroup_limits.open("m", "tiny")
    cgroup_limits.place("m", children.start(IDLE).pid)
    bases = list(_cgroup(cgroup_limits, "m").dirs.values())
    children.close()
    cgroup_limits.close()
    assert not any(path.parent.parent.exists() for path in bases)  # regserve/<data-dir hash>


def test_the_description_says_which_running_workers_keep_older_limits(
    cgroup_limits: ResourceLimits, children: Children
) -> None:
    cgroup_limits.open("m", "local-default")
    old = children.start(IDLE)
    cgroup_limits.place("m", old.pid)
    cgroup_limits.open("m", "tiny")
    assert cgroup_limits.describe("m").endswith(
        "; 1 running worker keeps its previous limits until restarted"
    )
    assert ", 0.5 cores, 100 MiB" in cgroup_limits.describe("m")
    old.kill()
    old.wait()
    cgroup_limits.explain_exit("m", old.pid, old.returncode)
    assert cgroup_limits.describe("m").endswith(", 0.5 cores, 100 MiB, at most 64 processes")
