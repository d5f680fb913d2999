"""A real multi-node Ray cluster on this machine, started as a user would (``ray start``).

A head that offers no CPUs (so every replica runs on a worker node) and one worker node (more
with :meth:`RayTestCluster.add_worker`), each
with a temp dir of its own, on 127.0.0.1, with Ray's token authentication on (a fresh token,
given through the environment, never written to ``~/.ray``). Every fixed port Ray would take
(client server, dashboard agent, metrics) is a free one: other Ray instances on the machine
(another test run, a developer's) are not disturbed.

Stopping: each ``ray start`` runs in a session of its own, and the node's processes (GCS,
raylet, agents, and the workers the raylet starts, Serve's replicas among them) stay in its
process group. ``stop`` sends that group SIGTERM, then SIGKILL to what is left: never
``ray stop``, which stops every Ray process of the user on the machine.

Another user: run by root (as in CI), the nodes run as a uid of their own (no passwd entry,
none of the machine's, none a process uses), with a home and temp dirs of theirs, so that
they cannot read regserve's data dir (root's, 0700 or 0711 with its models' folders 0700): a
replica that still read the leader's disk would fail. That user cannot run an interpreter
under ``/root`` (pyenv's, which the test venv names): the nodes then run the machine's
Python of the same minor version, in a venv of their own that adds this venv's
site-packages (``ray start`` as ``python -m ray.scripts.scripts``), and every driver and node
accepts another patch version (``RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor``:
:data:`DRIVER_ENV`).

Memory and CPU: the two idle nodes are 12 processes and about 1 GB of RSS summed (GCS, two
raylets, their agents; shared pages counted in each); Serve's controller and each replica
(mlflow, sklearn) add a few hundred MB each. Object stores are capped
at 100 MB per node. Starting both nodes takes 5 to 15 s on 2 cores.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from tests.support.server import free_port
from tests.support.timing import scaled

__all__ = ["DRIVER_ENV", "RayTestCluster"]

_OBJECT_STORE_BYTES = str(100 * 1024 * 1024)
_NODE_UIDS = range(60100, 61100)
"""Where the nodes' uid is picked (below the sandbox's default worker uids, 61184 on)."""
DRIVER_ENV = {"RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL": "minor"}
"""What a driver (regserve) of this cluster needs besides the token: see the module doc."""


class RayTestCluster:
    """A head (no CPUs) and ``worker_cpus`` CPUs on one worker node, reached at :attr:`address`."""

    def __init__(self, worker_cpus: int = 2) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short paths: Ray binds Unix sockets under them (about 107 bytes at most).
        self._root = Path(tempfile.mkdtemp(prefix="rs-rc-", dir="/tmp"))
        self.head_dir = self._root / "h"
        self.worker_dir = self._root / "w"
        self.uid = _free_uid() if os.geteuid() == 0 else None
        """The nodes' user (None: this process's own, when it is not root)."""
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")},
            **DRIVER_ENV,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
            # A runtime_env that cannot be built is tried once, not Ray's 3 x Serve's 3 times:
            # each try copies the node's whole virtualenv (tests/e2e/test_ray_cluster.py).
            "RUNTIME_ENV_RETRY_TIMES": "1",
            "RAY_SERVE_MAX_PER_REPLICA_RETRY_COUNT": "1",
        }
        self._python = sys.executable
        if self.uid is not None:
            os.chown(self._root, self.uid, self.uid)
            user = f"ray-{self.uid}"
            self.env.update(HOME=str(self._root), USER=user, LOGNAME=user)
            try:
                self._python = _python_for(self.uid, self._root / "py")
            except BaseException:
                shutil.rmtree(self._root, ignore_errors=True)
                raise
        self._worker_cpus = worker_cpus
        self._groups: list[int] = []
        self.extra_worker_dirs: list[Path] = []

    def can_read(self, path: Path) -> bool:
        """Can the nodes' user read ``path`` (a file) or list it (a directory)?"""
        probe = "import os, sys; p = sys.argv[1]; os.listdir(p) if os.path.isdir(p) else open(p)"
        done = subprocess.run(
            [self._python, "-c", probe, str(path)],
            capture_output=True,
            env=self.env,
            **self._as_user(),
        )
        return done.returncode == 0

    def _as_user(self) -> dict[str, object]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.uid, "extra_groups": [], "cwd": self._root}

    def start(self) -> RayTestCluster:
        try:
            self._start_node(
                "--head",
                f"--port={self.port}",
                "--num-cpus=0",
                f"--temp-dir={self.head_dir}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
            )
            self._start_node(
                f"--address={self.address}",
                f"--num-cpus={self._worker_cpus}",
                f"--temp-dir={self.worker_dir}",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, cpus: int = 2) -> Path:
        """Another worker node (its own temp dir, returned), stopped with the others."""
        node_dir = self._root / f"w{len(self.extra_worker_dirs) + 2}"
        self._start_node(
            f"--address={self.address}", f"--num-cpus={cpus}", f"--temp-dir={node_dir}"
        )
        self.extra_worker_dirs.append(node_dir)
        return node_dir

    def serve_replicas(self, app: str) -> dict[str, str]:
        """``{replica id: node id}`` of the application's running replicas, from Serve's
        controller (what ``serve status`` reads), asked by a driver of its own."""
        script = (
            "import json, sys, ray\n"
            "from ray import serve\n"
            "from ray.serve.context import _get_global_client\n"
            "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
            "serve.status()\n"
            "app = _get_global_client().get_serve_details()['applications'].get(sys.argv[2])\n"
            "found = {}\n"
            "for deployment in (app or {}).get('deployments', {}).values():\n"
            "    for r in deployment.get('replicas') or []:\n"
            "        if str(r.get('state')).endswith('RUNNING'):\n"
            "            found[r['replica_id']] = r['node_id']\n"
            "print('REPLICAS ' + json.dumps(found))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, self.address, app],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=scaled(120),
            check=False,
        )
        for line in done.stdout.splitlines():
            if line.startswith("REPLICAS "):
                found: dict[str, str] = json.loads(line.removeprefix("REPLICAS "))
                return found
        raise RuntimeError(f"could not read Serve's replicas: {done.stderr[-2000:]}")

    def _start_node(self, *args: str) -> None:
        cmd = [
            self._python,
            "-m",
            "ray.scripts.scripts",
            "start",
            *args,
            "--node-ip-address=127.0.0.1",
            f"--object-store-memory={_OBJECT_STORE_BYTES}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--disable-usage-stats",
        ]
        process = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the node's processes stay in this group: see stop()
            **self._as_user(),  # type: ignore[arg-type]
        )
        self._groups.append(process.pid)
        out, _ = process.communicate(timeout=scaled(120))
        if process.returncode != 0:
            raise RuntimeError(f"ray start {args[0]} failed:\n{out.decode(errors='replace')}")

    def running(self) -> bool:
        """Do the head's processes still run?"""
        return bool(self._groups) and _group_alive(self._groups[0])

    def stop(self) -> None:
        """Stop both nodes and every process they started (see the module doc)."""
        for group in reversed(self._groups):
            _signal_group(group, signal.SIGTERM)
        # The GCS may take its time over SIGTERM; nothing of a test cluster needs keeping.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_group_alive(g) for g in self._groups):
            time.sleep(0.2)
        for group in self._groups:
            _signal_group(group, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_group_alive(g) for g in self._groups):
            time.sleep(0.1)
        self._groups.clear()
        shutil.rmtree(self._root, ignore_errors=True)


def _free_uid() -> int:
    """A uid (and gid) of nobody: no user or group of the machine, no process running as it."""
    running = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            line = next(x for x in status.read_text().splitlines() if x.startswith("Uid:"))
            running.add(int(line.split()[1]))
    for uid in _NODE_UIDS:
        if uid in running:
            continue
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            return uid
    raise RuntimeError(f"no free uid in {_NODE_UIDS} for the Ray nodes")


def _python_for(uid: int, venv: Path) -> str:
    """An interpreter ``uid`` may run with this venv's packages: this one when it can, else
    the machine's Python of the same minor version in a venv at ``venv`` whose ``.pth`` adds
    this venv's site-packages (see the module doc)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    as_user = {"user": uid, "group": uid, "extra_groups": [], "cwd": "/", "env": env}
    ours = [sys.executable, "-c", "import ray"]
    with contextlib.suppress(OSError):  # not even allowed to start it
        if subprocess.run(ours, capture_output=True, check=False, **as_user).returncode == 0:  # type: ignore[call-overload]
            return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/local/bin:/usr/bin:/bin")
    if system is None:
        raise RuntimeError(f"the Ray nodes' user cannot run {sys.executable}, nor python{version}")
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths()["purelib"])
    pth = venv / "lib" / f"python{version}" / "site-packages" / "regserve-tests.pth"
    pth.write_text(f"import site; site.addsitedir({str(site)!r})\n")
    return str(venv / "bin" / "python")


def _signal_group(group: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    """Does a process of the group run (a zombie not counted)?"""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            return True
    return False
