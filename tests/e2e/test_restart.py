"""Workers outlive the main process and are adopted; a restart in place drops no request.

One regserve (``--env-manager local``) serves one iris version through the module's tests, in
order: a SIGHUP restart under load, a ``kill -9`` and a new ``regserve up``, then records that
must not be adopted. The orphan timeout has a regserve of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from regserve.backends.local.paths import WorkerPaths, run_dir_for
from tests.support.models import log_iris_version
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "restart-iris"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
CLIENTS = 6


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    server = RegServeProcess(tmp_path_factory.mktemp("restart") / "data").start()
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN):
        log_iris_version(MODEL)
    assert server.enable(MODEL).status_code == 200
    server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
    yield server
    server.close()


@pytest.fixture
def served_cold(tmp_path: Path) -> Iterator[RegServeProcess]:
    """A server whose templates start cold (REGSERVE_WARM_START=0): a cluster update then
    lasts seconds, long enough to stop regserve in the middle of it (forked from the model's
    warm process, the new template loads in about one and the update is over)."""
    server = RegServeProcess(tmp_path / "data", warm_start="0").start()
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN):
        log_iris_version(MODEL)
    assert server.enable(MODEL).status_code == 200
    server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
    yield server
    server.close()


def _running(pid: int) -> bool:
    """A live process (not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _boot_id(server: RegServeProcess) -> str | None:
    try:
        return str(server.health()["boot_id"])
    except httpx.HTTPError:  # a slow start-up: the request waits in the backlog
        return None


def _types(server: RegServeProcess) -> list[str]:
    return [e["event_type"] for e in server.events(MODEL)]


@dataclass
class _Load:
    """Clients scoring continuously over kept-alive connections; every outcome counted."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    answered: list[tuple[float, float]] = field(default_factory=list)
    """(finished at, seconds) of each 200."""
    failures: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> _Load:
        self.threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=180) as client:
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    r = client.post(
                        f"/model/{MODEL}/1/invocations", json={"dataframe_records": [ROW]}
                    )
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code == 200 and r.json() == {"predictions": [0]}:
                    self.answered.append((time.monotonic(), time.monotonic() - began))
                else:
                    self.failures.append(f"{r.status_code}: {r.text[:200]}")

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)


def _template_pid(server: RegServeProcess) -> int:
    """The pid in the record of version 1's template (the worker its replicas fork from)."""
    paths = WorkerPaths.for_template(server.data_dir.resolve(), MODEL, "1")
    return int(json.loads(paths.pidfile.read_text())["pid"])


def test_sighup_restart_under_load_drops_no_request(served: RegServeProcess) -> None:
    before = served.health()
    worker = served.versions(MODEL)["1"]["worker_pid"]
    template = _template_pid(served)
    ready_events = _types(served).count("VERSION_READY")
    load = _Load(served.url).start()
    try:
        wait_for(lambda: len(load.answered) >= 50, 60, "traffic before the restart")
        cmd = [sys.executable, "-m", "regserve.cli", "restart", "--data-dir", str(served.data_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        restarted_at = time.monotonic()
        wait_for(lambda: _boot_id(served) not in (None, before["boot_id"]), 180, "the new image")
        # it listens (and scores, from the stored routes) before its registry is ready; /health
        # says "ok" once the registry is and the workers are adopted
        wait_for(lambda: served.health()["status"] == "ok", 120, "the new image to be ready")
        wait_for(lambda: any(t > restarted_at + 1 for t, _ in load.answered), 60, "traffic after")
    finally:
        load.finish()
    assert load.failures == []
    slowest = max(seconds for _, seconds in load.answered)
    print(f"\n{len(load.answered)} requests, 0 failed; slowest {slowest:.2f} s during the restart")
    assert served.process is not None
    assert served.process.poll() is None
    version = served.versions(MODEL)["1"]
    assert (version["state"], version["worker_pid"]) == ("VERSION_STATE_READY", worker)
    assert "adopted" in version["state_message"]
    adopted = [e for e in served.events(MODEL) if e["event_type"] == "WORKER_ADOPTED"]
    assert adopted
    assert f"pid {worker}" in adopted[-1]["message"]
    assert _types(served).count("VERSION_READY") == ready_events  # no new worker started
    assert _template_pid(served) == template  # the template too was adopted, not reloaded
    assert _running(template)


def test_kill_9_then_up_adopts_the_running_worker(served: RegServeProcess) -> None:
    worker = served.versions(MODEL)["1"]["worker_pid"]
    types = _types(served)
    served.stop(signal.SIGKILL)
    assert _running(worker)  # workers outlive the main process
    served.start()
    version = served.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
    assert version["worker_pid"] == worker
    after = _types(served)
    assert after.count("WORKER_ADOPTED") == types.count("WORKER_ADOPTED") + 1
    assert after.count("VERSION_READY") == types.count("VERSION_READY")
    assert served.score(MODEL, "1", {"dataframe_records": [ROW]}).json() == {"predictions": [0]}

    # an adopted worker is not this process's child: its crash is still seen and restarted
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: "WORKER_RESTARTED" in _types(served), 120, "the adopted worker's restart")
    crashed = [e for e in served.events(MODEL) if e["event_type"] == "WORKER_CRASHED"]
    assert f"Worker pid {worker} exited" in crashed[-1]["message"]
    version = served.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
    assert version["worker_pid"] != worker


def test_a_stop_during_a_cluster_update_ends_and_keeps_the_serving_worker(
    served_cold: RegServeProcess,
) -> None:
    """SIGTERM while a blue-green update starts the new cluster: regserve exits at once (the
    update is abandoned, its starting workers stopped), the serving worker is kept and adopted."""
    worker = served_cold.versions(MODEL)["1"]["worker_pid"]
    config = {
        "node_type_id": "local-default",
        "tags": [{"key": "regserve.max_batch_size", "value": "32"}],
    }
    r = served_cold.api(
        "PUT",
        "update-cluster-config",
        json={"registered_model_name": MODEL, "desired_cluster_config": config},
    )
    assert r.status_code == 200, r.text
    wait_for(lambda: "CLUSTER_UPDATING" in _types(served_cold), 30, "the update to start")
    run_dir = run_dir_for(served_cold.data_dir.resolve())
    time.sleep(1.0)  # inside the seconds the new cluster's template spends loading the model
    started = time.monotonic()
    served_cold.stop()  # SIGTERM: the workers are kept, the update is not
    assert served_cold.process is not None
    assert served_cold.process.returncode == 0
    stopped_in = time.monotonic() - started
    assert stopped_in < 30, stopped_in  # it hung until killed before the fix
    assert _running(worker)
    wait_for(lambda: not _generation_pids(run_dir, 1), 30, "the new cluster's workers to stop")
    served_cold.start()
    version = served_cold.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
    assert version["worker_pid"] == worker  # adopted


def _generation_pids(run_dir: Path, generation: int) -> list[int]:
    """The running workers of that cluster generation, by their records."""
    return [
        pid
        for path in run_dir.glob("*.pid")
        if (data := json.loads(path.read_text())).get("generation") == generation
        and _running(pid := int(data["pid"]))
    ]


def _record(run_dir: Path, version: str) -> tuple[Path, dict[str, Any]]:
    for path in run_dir.glob("*.pid"):
        data = json.loads(path.read_text())
        if data.get("version") == version:
            return path, data
    raise AssertionError(f"no record of version {version} in {run_dir}")


def _start_time(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[19])


def test_records_of_dead_foreign_wrong_or_unwanted_workers_are_not_adopted(
    served: RegServeProcess,
) -> None:
    run_dir = run_dir_for(served.data_dir.resolve())
    worker = served.versions(MODEL)["1"]["worker_pid"]
    ready_events = _types(served).count("VERSION_READY")
    served.stop()  # SIGTERM: the worker stays for the next start
    assert _running(worker)

    # v1's worker now runs "another model" as far as its record says
    path, own = _record(run_dir, "1")
    path.write_text(json.dumps({**own, "model_path": "/elsewhere/model"}))
    # a record whose pid is now another program, one of a process that is gone, and a live
    # worker of a version nobody serves
    foreign = subprocess.Popen(["sleep", "300"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale_socket = run_dir / "stale.sock"
    model_dir = Path(own["model_path"])  # what v1's worker serves
    stale = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "regserve.worker",
            "--socket",
            str(stale_socket),
            "--model-path",
            str(model_dir),
            "--name",
            MODEL,
            "--version",
            "7",
        ],
        start_new_session=True,
    )
    wait_for(stale_socket.exists, 120, "the stale worker to listen")
    fake = [
        ("foreign", foreign.pid, _start_time(foreign.pid), "1"),
        ("gone", gone.pid, 1, "1"),
        ("stale", stale.pid, _start_time(stale.pid), "7"),
    ]
    for name, pid, started, version in fake:
        record = {
            **own,
            "pid": pid,
            "start_time": started,
            "version": version,
            "socket": str(run_dir / f"{name}.sock"),
            "forked_from": None,
            "origin": None,
        }
        (run_dir / f"{name}.pid").write_text(json.dumps(record))
    try:
        served.start()
        version = served.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        assert version["worker_pid"] != worker  # redeployed, not adopted
        wait_for(lambda: not _running(worker), 30, "the mismatched worker to be stopped")
        assert _types(served).count("VERSION_READY") == ready_events + 1
        wait_for(lambda: stale.poll() is not None, 30, "the unwanted worker to be stopped")
        assert foreign.poll() is None  # not ours: left alone
        for name in ("foreign", "gone", "stale"):
            assert not (run_dir / f"{name}.pid").exists(), name
    finally:
        for process in (foreign, stale):
            process.kill()
            process.wait()


def _archive_while_down(server: RegServeProcess, version: str) -> None:
    """Archive ``version`` in the hosted registry's own database (regserve is not running), with
    MLflow's client in a child process: importing MLflow's registry tables here would fix their
    webhook-secret key for the rest of the session (tests/registry's hosted server says so)."""
    uri = f"sqlite:///{server.data_dir.resolve() / 'mlflow.db'}"
    script = (
        "import sys, warnings\n"
        "from mlflow import MlflowClient\n"
        "warnings.simplefilter('ignore')\n"
        "uri, name, version = sys.argv[1:]\n"
        "MlflowClient(uri, uri).transition_model_version_stage(name, version, 'Archived')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, uri, MODEL, version],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_ctrl_c_restart_serves_before_the_registry_then_drops_what_was_archived(
    served: RegServeProcess,
) -> None:
    """Ctrl-C stops every worker. The next start serves the versions the store says were
    READY, from their files, before its registry is ready (the registry waits 20 s here);
    its first pass then removes the version archived while regserve was down."""
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, served.url, ADMIN_TOKEN):
        second = log_iris_version(MODEL, c=0.5)
    served.wait_version_state(MODEL, second, "VERSION_STATE_READY")
    before = served.versions(MODEL)["1"]["worker_pid"]
    served.stop(signal.SIGINT)
    assert not _running(before)
    _archive_while_down(served, second)
    served.env["REGSERVE_REGISTRY_START_DELAY"] = "20"
    try:
        served.start(ready=False)
        payload = {"dataframe_records": [ROW]}
        began = time.monotonic()
        wait_for(lambda: served.score(MODEL, "1", payload).status_code == 200, 20, "v1 to score")
        print(f"\nv1 scored {time.monotonic() - began:.1f} s after listening, before the registry")
        assert served.score(MODEL, second, payload).status_code == 200  # not known archived yet
        health = served.health()
        assert "registry" in health["starting"], health  # all of it before the registry
        assert served.versions(MODEL)["1"]["worker_pid"] not in (None, before)  # started anew

        wait_for(lambda: served.health()["status"] == "ok", 90, "the first pass")
        gone = served.score(MODEL, second, payload)
        assert gone.status_code == 404, gone.text
        assert second not in served.versions(MODEL)
        removed = [e for e in served.events(MODEL) if e["event_type"] == "VERSION_REMOVED"]
        assert removed[-1]["message"] == f"Version {second} removed: it was archived."
        assert served.score(MODEL, "1", payload).json() == {"predictions": [0]}
    finally:
        del served.env["REGSERVE_REGISTRY_START_DELAY"]


def test_orphaned_workers_stop_by_themselves(tmp_path: Path) -> None:
    server = RegServeProcess(tmp_path / "data", orphan_timeout="3").start()
    try:
        with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN):
            log_iris_version("orphan-iris")
        assert server.enable("orphan-iris").status_code == 200
        worker = server.wait_version_state("orphan-iris", "1", "VERSION_STATE_READY")["worker_pid"]
        server.stop(signal.SIGKILL)  # regserve is gone for good
        assert _running(worker)
        wait_for(lambda: not _running(worker), 60, "the orphaned worker to stop")
        log = (server.data_dir / "logs" / "orphan-iris" / "1.log").read_text()
        assert "no supervisor for 3 s: stopping (orphaned)" in log
    finally:
        server.close()
