"""Replicas and cluster updates under load, against a real ``regserve up``: a replica killed
while clients score, a blue-green reconfiguration, and one whose new workers cannot start.
Every test counts failed requests; there must be none."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regserve.backends.local.paths import WorkerPaths, run_dir_for
from regserve.backends.local.worker_records import is_running, read_record
from tests.support.load import ScoringLoad
from tests.support.models import log_threaded_version
from tests.support.processes import alive
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "replicated"


def _serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: str) -> RegServeProcess:
    server = RegServeProcess(tmp_path / "data", **settings).start()
    with user_registry(monkeypatch, server.url, ADMIN_TOKEN) as registry:
        assert registry.register(MODEL) == "1"
    assert server.enable(MODEL).status_code == 200
    server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
    return server


@pytest.fixture
def two_replicas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RegServeProcess]:
    server = _serve(tmp_path, monkeypatch, replicas="2")
    yield server
    server.close()


def _load(server: RegServeProcess, refs: list[str], clients: int = 3) -> ScoringLoad:
    return ScoringLoad(server.url, ADMIN_TOKEN, MODEL, refs, clients)


def _pidfile(server: RegServeProcess, replica: int, generation: int = 0) -> Path:
    data_dir = server.data_dir.resolve()
    return WorkerPaths.for_version(data_dir, MODEL, "1", replica, generation).pidfile


def _record(server: RegServeProcess, replica: int, generation: int = 0) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(_pidfile(server, replica, generation).read_text())
    return record


def _pid(server: RegServeProcess, replica: int, generation: int = 0) -> int:
    return int(_record(server, replica, generation)["pid"])


def _template_pids(server: RegServeProcess) -> list[int]:
    """The running template workers of this server, found by their command line, which names
    their control socket in its run dir (the replicas forked from them have that command line
    too, and a ``*.pid`` record), or by their records (a template forked from the model's warm
    process runs the warm process's command line)."""
    run_dir = str(run_dir_for(server.data_dir.resolve())).encode()
    replicas = _worker_pids(server)
    records = [read_record(p) for p in run_dir_for(server.data_dir.resolve()).glob("*.tpl*")]
    found = [r.pid for r in records if r is not None and is_running(r) and r.forked_from]
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        pid = int(proc.name) if proc.name.isdigit() else 0
        if b"--template" in cmdline and run_dir in cmdline and pid not in replicas:
            found.append(pid)
    return sorted(set(found))


def _worker_pids(server: RegServeProcess) -> set[int]:
    run_dir = run_dir_for(server.data_dir.resolve())
    return {int(json.loads(p.read_text())["pid"]) for p in run_dir.glob("*.pid")}


def _events(server: RegServeProcess, kind: str) -> list[dict[str, Any]]:
    return [e for e in server.events(MODEL) if e["event_type"] == kind]


def _update(server: RegServeProcess, node_type: str, **tags: str) -> Any:
    return server.api(
        "PUT",
        "update-cluster-config",
        json={
            "registered_model_name": MODEL,
            "desired_cluster_config": {
                "node_type_id": node_type,
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
        },
    )


def _state_message(server: RegServeProcess) -> str:
    return str(server.versions(MODEL)["1"]["state_message"])


def test_killed_replica_costs_no_request_and_comes_back(two_replicas: RegServeProcess) -> None:
    server = two_replicas
    wait_for(lambda: "2 of 2 replicas ready" in _state_message(server), 60, "both replicas")
    victim = _pid(server, 2)
    with _load(server, ["1", "latest"]) as load:
        wait_for(lambda: load.count() >= 50, 30, "load to be running")
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        restarted = wait_for(
            lambda: _events(server, "WORKER_RESTARTED"),
            120,
            "replica 2 to serve again",
            interval=0.05,
        )
        back_in = time.monotonic() - killed_at
        sent_before = load.count()
        wait_for(lambda: load.count() >= sent_before + 50, 30, "more load after the restart")
    assert load.failures() == [], load.failures()[:5]
    print(
        f"\nkill -9 of replica 2 -> serving again in {back_in:.2f} s; "
        f"{load.count()} requests, none failed"
    )
    assert back_in < 60  # the target is 5 s (docs/reliability.md has the measured figure)
    crashed = _events(server, "WORKER_CRASHED")
    assert len(crashed) == 1, crashed
    assert crashed[0]["message"].startswith(f"Replica 2: Worker pid {victim} was killed by SIGKILL")
    assert restarted[0]["message"].startswith("Replica 2: Worker restarted")
    assert _pid(server, 2) != victim
    assert alive(_pid(server, 1))
    version = server.versions(MODEL)["1"]
    assert version["state"] == "VERSION_STATE_READY"
    assert version["state_message"].startswith("2 of 2 replicas ready")


def test_a_lost_template_costs_nothing_its_standby_takes_over(
    two_replicas: RegServeProcess,
) -> None:
    """The template the replicas are forked from is killed: they serve on, its standby takes
    over at once (no cold start), a replica killed after that is forked from it, and a new
    standby is forked. Then template and standby are killed together: a template starts cold."""
    server = two_replicas
    wait_for(lambda: "2 of 2 replicas ready" in _state_message(server), 60, "both replicas")
    control = WorkerPaths.for_template(server.data_dir.resolve(), MODEL, "1")
    assert (
        _record(server, 1)["forked_from"]
        == _record(server, 2)["forked_from"]
        == str(control.socket)
    )
    standby_record = control.pidfile.with_name(control.pidfile.name + ".standby")
    wait_for(standby_record.exists, 60, "the template's standby")
    template = _read_pid(control.pidfile)
    standby = _read_pid(standby_record)
    assert sorted(_template_pids(server)) == sorted([template, standby])
    with _load(server, ["1", "latest"]) as load:
        wait_for(lambda: load.count() >= 50, 30, "load to be running")
        os.kill(template, signal.SIGKILL)
        wait_for(lambda: _events(server, "TEMPLATE_RESTARTED"), 30, "the standby to take over")
        assert _read_pid(control.pidfile) == standby  # promoted, not started anew
        wait_for(
            lambda: standby_record.exists() and _read_pid(standby_record) != standby,
            60,
            "a new standby",
        )
        victim = _pid(server, 1)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: _events(server, "WORKER_RESTARTED"), 60, "replica 1 to serve again")
        promoted_socket = json.loads(control.pidfile.read_text())["socket"]
        assert _record(server, 1)["forked_from"] == promoted_socket  # forked from the standby

        both = [_read_pid(control.pidfile), _read_pid(standby_record)]
        for pid in both:  # both at once: only now is a template started cold
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(_events(server, "TEMPLATE_RESTARTED")) >= 2, 30, "the second loss")
        wait_for(
            lambda: _template_pids(server) and not set(_template_pids(server)) & set(both),
            120,
            "a template started cold",
        )
        sent = load.count()
        wait_for(lambda: load.count() >= sent + 50, 30, "more load after all that")
    assert load.failures() == [], load.failures()[:5]
    # The victim was forked by the template that was killed: its exit status died with it.
    crashed = [e["message"] for e in _events(server, "WORKER_CRASHED")]
    assert len(crashed) == 1, crashed
    assert crashed[0].startswith(f"Replica 1: Worker pid {victim} "), crashed
    first, *later = _events(server, "TEMPLATE_RESTARTED")
    assert first["message"].startswith(
        f"The template worker pid {template} was killed by SIGKILL; its standby takes over."
    ), first
    # the two kills are not one instant: the supervisor may see the template die while its
    # standby still lives (that promotion then fails too); either way a cold start follows
    assert any("starting it again" in e["message"] for e in later), later
    assert "SIGKILL; its standby takes over" in _log_text(server)


def _read_pid(record: Path) -> int:
    return int(json.loads(record.read_text())["pid"])


def _log_text(server: RegServeProcess) -> str:
    return WorkerPaths.for_version(server.data_dir.resolve(), MODEL, "1").log.read_text()


def test_a_model_unsafe_to_fork_gets_fresh_replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that starts a thread when loaded would hang in a forked child: its template
    refuses, an event says so, and the replicas are fresh workers that serve."""
    server = RegServeProcess(tmp_path / "data", replicas="2").start()
    try:
        with user_registry(monkeypatch, server.url, ADMIN_TOKEN):
            assert log_threaded_version(MODEL) == "1"
        assert server.enable(MODEL).status_code == 200
        server.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        wait_for(lambda: "2 of 2 replicas ready" in _state_message(server), 120, "both replicas")
        [disabled] = _events(server, "TEMPLATE_DISABLED")
        assert disabled["message"].startswith(
            "Replicas start as fresh workers, not forked: the model is not safe to fork once loaded"
        ), disabled
        assert "regserve.fork_replicas=false" in disabled["message"]
        assert [_record(server, i)["forked_from"] for i in (1, 2)] == [None, None]
        assert _template_pids(server) == []
        assert "the model started threads while loading: model-refresher" in _log_text(server)
        row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
        scored = server.score(MODEL, "1", {"dataframe_records": [row, row]})
        assert (scored.status_code, scored.json()) == (200, {"predictions": [2, 2]})
    finally:
        server.close()


def test_reconfigure_under_load_moves_to_new_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _serve(tmp_path, monkeypatch)
    try:
        r = _update(server, "local-default", **{"regserve.replicas": "17"})
        assert r.status_code == 400, r.text
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "regserve.replicas" in r.json()["message"]
        assert "1 to 16" in r.json()["message"]

        old = _worker_pids(server)
        assert len(old) == 1
        assert _record(server, 1)["forked_from"]  # forked from a template, by default
        # A label changes nothing that runs: no worker restarts.
        assert _update(server, "local-default", team="fraud").status_code == 200
        wait_for(lambda: _events(server, "CLUSTER_CONFIG_APPLIED"), 30, "the label to apply")
        assert _worker_pids(server) == old

        with _load(server, ["1", "latest"], clients=3) as load:
            wait_for(lambda: load.count() >= 50, 30, "load to be running")
            r = _update(
                server,
                "local-small",
                team="fraud",
                **{"regserve.replicas": "2", "regserve.fork_replicas": "false"},
            )
            assert r.status_code == 200, r.text
            wait_for(lambda: _events(server, "CLUSTER_UPDATED"), 120, "the new cluster")
            sent = load.count()
            wait_for(lambda: load.count() >= sent + 50, 30, "load on the new cluster")
        assert load.failures() == [], load.failures()[:5]
        assert {a.version for a in load.snapshot()} == {"1"}

        new = _worker_pids(server)
        assert len(new) == 2
        assert not new & old
        assert not any(alive(pid) for pid in old)
        # regserve.fork_replicas=false: each replica is a process of its own, no template.
        assert [_record(server, i, generation=1)["forked_from"] for i in (1, 2)] == [None, None]
        assert _template_pids(server) == []
        kinds = [e["event_type"] for e in server.events(MODEL)]  # oldest first
        tail = kinds[kinds.index("CLUSTER_UPDATING") :]
        assert [k for k in tail if k.startswith("CLUSTER_") or k == "VERSION_UPDATED"] == [
            "CLUSTER_UPDATING",
            "VERSION_UPDATED",
            "CLUSTER_UPDATED",
        ]
        assert "2 of 2 replicas ready" in _state_message(server)
        endpoint = next(
            e
            for e in server.api("GET", "list").json()["endpoints"]
            if e["registered_model_name"] == MODEL
        )
        assert endpoint["actual_cluster_config"]["node_type_id"] == "local-small"
    finally:
        server.close()


def test_failed_update_keeps_the_old_cluster_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _serve(tmp_path, monkeypatch, max_restarts="2")
    try:
        old = _worker_pids(server)
        # The downloaded model goes missing: new workers cannot load it; the running one
        # has it in memory.
        shutil.rmtree(server.model_dir(MODEL, "1"))
        with _load(server, ["1"], clients=2) as load:
            wait_for(lambda: load.count() >= 20, 30, "load to be running")
            assert _update(server, "local-default", **{"regserve.replicas": "2"}).status_code == 200
            failed = wait_for(
                lambda: _events(server, "CLUSTER_UPDATE_FAILED"), 120, "the update to fail"
            )
        assert load.failures() == [], load.failures()[:5]
        assert "could not be loaded" in failed[0]["message"]
        assert "keeps serving" in failed[0]["message"]
        assert not _events(server, "CLUSTER_UPDATED")
        assert _worker_pids(server) == old
        status = server.status(MODEL)
        assert status["state"] == "ENDPOINT_STATE_READY"
        assert "The last cluster update failed" in status["state_message"]
        assert (
            server.score(
                MODEL,
                "1",
                {
                    "dataframe_records": [
                        {
                            "sepal_length": 5.1,
                            "sepal_width": 3.5,
                            "petal_length": 1.4,
                            "petal_width": 0.2,
                        }
                    ]
                },
            ).status_code
            == 200
        )
    finally:
        server.close()


def test_a_request_waits_out_a_restart_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its only worker killed, a version's requests wait at the gateway for the restart
    and get 200 (before, they got 503 at once). The worker is not forked from a template (that
    restart takes milliseconds): a fresh one takes seconds to load."""
    server = _serve(tmp_path, monkeypatch, fork_replicas="false")
    try:
        row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
        assert server.score(MODEL, "1", {"dataframe_records": [row]}).status_code == 200
        pid = _pid(server, 1)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), 10, "the worker to die")
        started = time.monotonic()
        r = server.score(MODEL, "1", {"dataframe_records": [row]}, timeout=60)
        waited = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert r.headers["x-model-version"] == "1"
        assert _pid(server, 1) != pid  # answered by the restarted worker
        assert waited > 0.5  # it did wait: a fresh worker imports MLflow for seconds
        assert [e["message"] for e in _events(server, "WORKER_CRASHED")]
    finally:
        server.close()


def test_a_new_version_s_template_is_forked_from_the_model_s_warm_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's warm process runs in its sandbox (its user when regserve is root, the
    allow-listed environment) and version 2's template is forked from it."""
    server = _serve(tmp_path, monkeypatch)
    try:
        run_dir = run_dir_for(server.data_dir.resolve())
        wait_for(lambda: _events(server, "WARM_PROCESS_STARTED"), 60, "the warm process")
        [record_path] = run_dir.glob("*.warm")
        warm = read_record(record_path)
        assert warm is not None
        with user_registry(monkeypatch, server.url, ADMIN_TOKEN) as registry:
            assert registry.register(MODEL) == "2"
        server.wait_version_state(MODEL, "2", "VERSION_STATE_READY")
        template = read_record(
            WorkerPaths.for_template(server.data_dir.resolve(), MODEL, "2").pidfile
        )
        assert template is not None
        assert template.forked_from == warm.socket
        assert _parent(template.pid) == warm.pid
        replica = _pid(server, 1)  # version 1's: a worker of the same model
        owner = os.stat(f"/proc/{replica}").st_uid
        assert os.stat(f"/proc/{warm.pid}").st_uid == owner
        if os.geteuid() == 0:  # regserve can change user: the model's own
            assert owner != 0
        environ = Path(f"/proc/{warm.pid}/environ").read_bytes()
        assert b"REGSERVE_" not in environ
        assert ADMIN_TOKEN.encode() not in environ
        score = server.client.post(
            f"/model/{MODEL}/2/invocations", json={"dataframe_split": SPLIT_IRIS}
        )
        assert score.status_code == 200, score.text
    finally:
        server.close()
    assert not alive(warm.pid)


SPLIT_IRIS = {
    "columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
    "data": [[5.1, 3.5, 1.4, 0.2]],
}


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])
