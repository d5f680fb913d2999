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

Memory and CPU: the two idle nodes are 12 processes and about 1 GB of RSS summed (GCS, two
raylets, their agents; shared pages counted in each); Serve's controller and each replica
(mlflow, sklearn) add a few hundred MB each. Object stores are capped
at 100 MB per node. Starting both nodes takes 5 to 15 s on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.server import free_port
from tests.support.timing import scaled

__all__ = ["RayTestCluster"]

_OBJECT_STORE_BYTES = str(100 * 1024 * 1024)


class RayTestCluster:
    """A head (no CPUs) and ``worker_cpus`` CPUs on one worker node, reached at :attr:`address`."""

    def __init__(self, worker_cpus: int = 2) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short paths: Ray binds Unix sockets under them (about 107 bytes at most).
        self._root = Path(tempfile.mkdtemp(prefix="rs-rc-", dir="/tmp"))
        self.head_dir = self._root / "h"
        self.worker_dir = self._root / "w"
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
            # A runtime_env that cannot be built is tried once, not Ray's 3 x Serve's 3 times:
            # each try copies the node's whole virtualenv (tests/e2e/test_ray_cluster.py).
            "RUNTIME_ENV_RETRY_TIMES": "1",
            "RAY_SERVE_MAX_PER_REPLICA_RETRY_COUNT": "1",
        }
        self._worker_cpus = worker_cpus
        self._groups: list[int] = []
        self.extra_worker_dirs: list[Path] = []

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
        ray = Path(sys.executable).parent / "ray"
        cmd = [
            str(ray),
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
