"""The soak's faults, each done to a real ``regserve up`` the way an operator or a crash would.

- :meth:`Cluster.kill_worker`: ``kill -9`` of a random worker process of the model: a replica,
  the version's template or its standby; one kill in three takes two at once (both replicas
  of a version, or the template with its standby). It measures how long until the version
  says every one of its replicas is ready again, the killed processes are replaced (a
  template runs again), and the version answers.
- :meth:`Cluster.move_refs`: the Production stage and the ``champion`` alias move to the other
  version (through MLflow's client, as a user would).
- :meth:`Cluster.reconfigure`: ``update-cluster-config`` with another node type and tag.
- :meth:`Cluster.restart`: the main process restarts, by ``SIGHUP`` when the running regserve
  says it restarts without downtime, else by ``SIGTERM`` and a new ``regserve up`` on the same
  port and data dir.

Everything here is blocking; the soak runs it in threads beside the asyncio load.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.servers import TOKEN, Server, start_regserve, wait_until
from bench.soak_load import Timeline
from regserve.backends.local.paths import run_dir_for
from regserve.backends.local.worker_records import is_running, read_record, read_records

__all__ = ["API", "Cluster", "Kill", "Restart", "restart_mode"]

API = "/api/2.0/preview/mlflow/endpoints"
_HUP_FIELDS = ("boot_id",)
"""A /health that names its boot (regserve with worker adoption) restarts in place on SIGHUP."""


def restart_mode(health: dict[str, Any]) -> str:
    """``hup`` when ``/health`` says a SIGHUP restarts regserve keeping its workers (it names
    its boot), else ``term`` (an older regserve: stop it and start it again)."""
    return "hup" if any(health.get(name) for name in _HUP_FIELDS) else "term"


@dataclass
class Kill:
    version: str
    pids: list[int]
    roles: list[str]
    """What was killed: ``replica``, ``template``, ``standby``."""
    at: float
    back_after_s: float | None = None
    """None: not back within the limit, or a main-process restart overlapped it."""
    overlapped_restart: bool = False


@dataclass
class Restart:
    mode: str
    at: float
    down_s: float = 0.0
    """From the signal until ``/health`` answered again."""
    ready_after_s: float = 0.0
    """From the signal until every version was READY again."""


@dataclass
class Cluster:
    """The running regserve of the soak and the model it serves."""

    server: Server
    data_dir: Path
    workdir: Path
    settings: dict[str, str]
    model: str
    versions: tuple[str, ...]
    timeline: Timeline
    body: bytes
    restarting: bool = False
    restarts: list[Restart] = field(default_factory=list)
    production: str = "1"

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    # -- what runs ------------------------------------------------------------------------------

    def workers(self) -> dict[int, str]:
        """Serving worker pid -> the version it serves."""
        return {pid: version for pid, (version, _) in self._records().items()}

    def _records(self) -> dict[int, tuple[str, str]]:
        """Serving worker pid -> (version, socket), from the worker records regserve keeps (a
        replica forked from a template has the template's command line, and outlives it)."""
        run_dir = run_dir_for(self.data_dir.resolve())
        return {
            record.pid: (record.version, record.socket)
            for _, record in read_records(run_dir)
            if record is not None and record.version is not None and is_running(record)
        }

    def ready_versions(self, every_replica: bool = False) -> set[str]:
        """The READY versions; with ``every_replica``, only those whose every replica is."""
        try:
            with self.http() as http:
                r = http.get(f"{API}/list-versions", params={"registered_model_name": self.model})
        except httpx.HTTPError:
            return set()
        if r.status_code != 200:
            return set()
        return {
            v["endpoint_version_name"]
            for v in r.json()["endpoint_versions"]
            if v["state"].endswith("READY")
            and (not every_replica or _every_replica_ready(v.get("state_message") or ""))
        }

    def wait_ready(self, timeout: float = 300) -> None:
        every = set(self.versions)
        wait_until(lambda: self.ready_versions(True) >= every, timeout, "every replica READY")

    # -- faults ---------------------------------------------------------------------------------

    def kill_worker(self, rng: random.Random) -> Kill | None:
        """``kill -9`` one or two worker processes of a version whose replicas are all READY
        (see the module docstring); None when there is none to kill."""
        ready = self.ready_versions(every_replica=True)
        if not ready or self.restarting:
            return None
        version = rng.choice(sorted(ready))
        replicas = {pid: sock for pid, (v, sock) in self._records().items() if v == version}
        templates = self._templates(version)
        chosen = self._choose(rng, replicas, templates)
        if not chosen:
            return None
        roles = ["replica" if pid in replicas else templates[pid] for pid in chosen]
        kill = Kill(version, chosen, roles, time.monotonic())
        for pid in chosen:
            os.kill(pid, signal.SIGKILL)
        self._wait_back(kill, [(pid, replicas[pid]) for pid in chosen if pid in replicas])
        return kill

    @staticmethod
    def _choose(
        rng: random.Random, replicas: dict[int, str], templates: dict[int, str]
    ) -> list[int]:
        if rng.random() < 1 / 3:  # two at once
            pairs = [sorted(replicas)] if len(replicas) >= 2 else []
            pairs += [sorted(templates)] if len(templates) >= 2 else []
            if pairs:
                return list(rng.choice(pairs))
        every = sorted(replicas) + sorted(templates)
        return [rng.choice(every)] if every else []

    def _templates(self, version: str) -> dict[int, str]:
        """The version's running template and standby: pid -> role."""
        found: dict[int, str] = {}
        run_dir = run_dir_for(self.data_dir.resolve())
        for path in [*run_dir.glob("*.tpl"), *run_dir.glob("*.tpl.standby")]:
            record = read_record(path)
            if record is not None and record.version == version and is_running(record):
                found[record.pid] = "standby" if path.name.endswith(".standby") else "template"
        return found

    def _wait_back(self, kill: Kill, sockets: list[tuple[int, str]], limit: float = 60) -> None:
        """Until other processes serve on the killed replicas' sockets (or the version moved to
        new sockets: a cluster update), a template runs again if one was killed, and the
        version says every replica is READY and answers."""
        restarts = len(self.restarts)
        while time.monotonic() - kill.at < limit:
            if len(self.restarts) != restarts or self.restarting:
                kill.overlapped_restart = True
                return
            back = all(self._replaced(pid, sock) for pid, sock in sockets)
            if len(sockets) < len(kill.pids):  # a template or standby was killed
                back = back and bool(set(self._templates(kill.version)) - set(kill.pids))
            if back and self._all_ready(kill.version) and self._answers(kill):
                kill.back_after_s = round(time.monotonic() - kill.at, 2)
                return
            time.sleep(0.05)

    def _replaced(self, pid: int, socket: str) -> bool:
        """Another worker runs on ``socket``, or the socket is gone (its replica set was
        replaced by a cluster update and stopped: its records are removed)."""
        run_dir = run_dir_for(self.data_dir.resolve())
        on_socket = [r for _, r in read_records(run_dir) if r is not None and r.socket == socket]
        return not on_socket or any(r.pid != pid and is_running(r) for r in on_socket)

    def _all_ready(self, version: str) -> bool:
        return version in self.ready_versions(every_replica=True)

    def _answers(self, kill: Kill) -> bool:
        path = f"/model/{self.model}/{kill.version}/invocations"
        try:
            with self.http() as http:
                r = http.post(path, content=self.body, headers={"content-type": "application/json"})
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def move_refs(self) -> None:
        """Production and ``champion`` move to the other version: the new one joins the stage,
        then the old one leaves it (never an empty stage)."""
        from mlflow import MlflowClient

        old = self.production
        new = next(v for v in self.versions if v != old)
        client = MlflowClient(tracking_uri=self.server.url, registry_uri=self.server.url)
        self.timeline.point("Production", {old, new})
        self.timeline.point("champion", {old, new})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stages are deprecated in MLflow, still served
            client.transition_model_version_stage(self.model, new, "Production")
            client.set_registered_model_alias(self.model, "champion", new)
            client.transition_model_version_stage(self.model, old, "Staging")
        self.timeline.point("Production", {new})
        self.timeline.point("champion", {new})
        self.production = new

    def reconfigure(self, node_type: str, tags: dict[str, str]) -> None:
        config = {
            "node_type_id": node_type,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        with self.http() as http:
            r = http.put(
                f"{API}/update-cluster-config",
                json={"registered_model_name": self.model, "desired_cluster_config": config},
            )
        r.raise_for_status()

    def restart(self, mode: str) -> Restart:
        """Restart the main process; returns once every version is READY again."""
        restart = Restart(mode, time.monotonic())
        self.restarting = True
        try:
            if mode == "hup":
                os.kill(self.server.process.pid, signal.SIGHUP)
                time.sleep(0.2)
                self.server.wait_http("/health")
            else:
                self._stop_main()
                port = int(self.server.url.rsplit(":", 1)[1])
                self.server = start_regserve(
                    self.data_dir, self.workdir, self.settings, tag="-soak", port=port
                )
            restart.down_s = round(time.monotonic() - restart.at, 2)
            self.wait_ready()
            restart.ready_after_s = round(time.monotonic() - restart.at, 2)
        finally:
            self.restarting = False
            self.restarts.append(restart)
        return restart

    def _stop_main(self) -> None:
        process = self.server.process
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


_REPLICAS_READY = re.compile(r"^(\d+) of (\d+) replicas ready")


def _every_replica_ready(state_message: str) -> bool:
    """A READY version's state message counts its ready replicas ("1 of 2 replicas ready;
    replica 2: ...") unless it has one, or all of them are."""
    counted = _REPLICAS_READY.match(state_message)
    return counted is None or counted.group(1) == counted.group(2)
