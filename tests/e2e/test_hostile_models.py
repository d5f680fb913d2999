"""Model code is untrusted: hostile versions, registered by a user with only CAN_EDIT on their
own model and served for real, try what an attacker would. Each attempt fails, and the other
model (``victim``) answers every request of a steady load meanwhile.

Run with ``--env-manager local`` and ``virtualenv``; the limits (a fork bomb, memory past the
node type, no network) with ``local`` only: they do not depend on the environment. The Ray
variant is at the end (what Ray cannot isolate is said there).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from regserve.backends.local.limits import ResourceLimits
from regserve.nodes import NodeTypes
from tests.conftest import require_service
from tests.support.hostile import log_hostile_version, report_of
from tests.support.load import ScoringLoad
from tests.support.models import log_iris_version
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

# Set-up builds two environments under virtualenv: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

VICTIM, HOSTILE, ATTACKER = "victim", "hostile", "mallory"
READY = "VERSION_STATE_READY"
ATTACKS = ("env", "files", "sockets", "signals", "network")
MAX_PIDS = 48


@dataclass
class Arena:
    server: RegServeProcess
    attacker: httpx.Client
    versions: dict[str, str]
    """attack -> the hostile version that runs it."""
    load: ScoringLoad
    env_manager: str

    first_attack: float = float("inf")
    last_attack: float = 0.0

    def attack(self, kind: str, targets: list[str] | None = None, model: str = HOSTILE) -> Any:
        version = self.versions[kind] if model == HOSTILE else "1"
        self.first_attack = min(self.first_attack, time.monotonic())
        rows = [{"target": t} for t in targets or [""]]
        r = self.attacker.post(
            f"/model/{model}/{version}/invocations", json={"dataframe_records": rows}, timeout=120
        )
        assert r.status_code == 200, r.text
        self.last_attack = time.monotonic()
        return report_of(r.json())


def _require_root() -> None:
    if os.geteuid() != 0:
        require_service("workers get users of their own only when regserve runs as root")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every attack with both environment managers, but those whose defence does not depend on
    the environment (marked ``local_only``) with ``local`` alone."""
    if "arena" not in metafunc.fixturenames:
        return
    local_only = metafunc.definition.get_closest_marker("local_only") is not None
    managers = ["local"] if local_only else ["local", "virtualenv"]
    metafunc.parametrize("arena", managers, indirect=True, scope="module")


@pytest.fixture(scope="module")
def arena(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Arena]:
    _require_root()
    env_manager = str(request.param)
    root = tmp_path_factory.mktemp(f"hostile-{env_manager}")
    types = root / "node-types.yaml"
    types.write_text("node_types:\n  - {id: tiny, cores: 0.5, memory: 400MiB}\n")
    server = RegServeProcess(
        root / "data",
        env_manager=env_manager,
        cluster_max_pids=str(MAX_PIDS),
        node_types_file=str(types),
        fork_replicas="false",
    ).start()
    try:  # a failed or timed-out set-up stops the server too
        token, versions = _set_up(server)
        attacker = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        with attacker, ScoringLoad(server.url, ADMIN_TOKEN, VICTIM, ["1"], clients=1) as load:
            # the load has answered before the first attack (what the last test checks)
            wait_for(lambda: bool(load.snapshot()), 30, "the victim's first answer")
            yield Arena(server, attacker, versions, load, env_manager)
    finally:
        server.close()


def _set_up(server: RegServeProcess) -> tuple[str, dict[str, str]]:
    """The attacker (a service principal with CAN_EDIT on its model only) and its versions,
    the victim, both served: (the attacker's token, attack -> version)."""
    admin = server.client
    assert admin.post("/api/2.0/mlflow/registered-models/create", json={"name": HOSTILE}).is_success
    sp = admin.post("/api/2.0/preview/scim/v2/ServicePrincipals", json={"displayName": ATTACKER})
    assert sp.status_code == 200, sp.text
    made = admin.post(
        "/api/2.0/token-management/on-behalf-of/tokens",
        json={"application_id": ATTACKER, "comment": "attacker"},
    )
    assert made.status_code == 200, made.text
    token = str(made.json()["token_value"])
    grant = {
        "access_control_list": [
            {"service_principal_name": ATTACKER, "permission_level": "CAN_EDIT"}
        ]
    }
    assert admin.patch(f"/api/2.0/permissions/registered-models/{HOSTILE}", json=grant).is_success
    with pytest.MonkeyPatch.context() as mp:
        with user_registry(mp, server.url, ADMIN_TOKEN):
            log_iris_version(VICTIM)
        with user_registry(mp, server.url, token):
            versions = {kind: log_hostile_version(HOSTILE, kind) for kind in ATTACKS}
    # Each model's own variables, from files only an administrator can write.
    model_env = server.data_dir / "model-env"
    (model_env / f"{HOSTILE}.env").write_text("MODEL_API_KEY=hostile-own-key\n")
    (model_env / f"{VICTIM}.env").write_text("VICTIM_API_KEY=victim-secret-key\n")
    for model in (VICTIM, HOSTILE):
        assert server.enable(model).status_code == 200
    server.wait_version_state(VICTIM, "1", READY, timeout=600)
    for version in versions.values():
        server.wait_version_state(HOSTILE, version, READY, timeout=600)
    return token, versions


def _worker_uids(model: str, server: RegServeProcess) -> set[int]:
    """The users the model's workers run as (read from /proc, as root)."""
    pids = {v["worker_pid"] for v in server.versions(model).values() if v.get("worker_pid")}
    return {os.stat(f"/proc/{pid}").st_uid for pid in pids}


def test_the_attacker_may_edit_its_model_but_not_serve_it(arena: Arena) -> None:
    """The premise: CAN_EDIT registers versions and scores them, and nothing more."""
    r = arena.attacker.post(
        "/api/2.0/preview/mlflow/endpoints/disable", json={"registered_model_name": VICTIM}
    )
    assert r.status_code == 403, r.text
    r = arena.attacker.post(f"/model/{VICTIM}/1/invocations", json={"dataframe_records": [{}]})
    assert r.status_code == 403, r.text


def test_the_environment_holds_no_secret(arena: Arena) -> None:
    report = arena.attack("env")
    environ: dict[str, str] = report["environ"]
    secrets = [ADMIN_TOKEN, (arena.server.data_dir / "webhook-secret").read_text().strip()]
    assert not [k for k in environ if k.startswith(("REGSERVE_", "_MLFLOW_SERVER", "MLFLOW_"))]
    assert environ["MODEL_API_KEY"] == "hostile-own-key"  # its own, from its model env file
    assert not [v for v in environ.values() if "victim-secret-key" in v]
    assert not [k for k, v in environ.items() if any(s in v for s in secrets)]
    assert report["uid"] not in (0, os.getuid())
    assert report["groups"] == []
    victim_uids = _worker_uids(VICTIM, arena.server)
    hostile_uids = _worker_uids(HOSTILE, arena.server)
    assert victim_uids
    assert hostile_uids == {report["uid"]}
    assert not victim_uids & hostile_uids, "two models share a user"


def test_regserve_files_and_other_models_files_cannot_be_read(arena: Arena) -> None:
    data = arena.server.data_dir
    secrets = [
        "state.db",
        "state.db-wal",
        "mlflow.db",
        "admin-token",
        "webhook-secret",
        "mlflow-webhook-key",
        "users.json",
        "regserve.pid",
    ]
    victim_files = [p for p in (data / "models").rglob("*") if VICTIM in str(p) and p.is_file()]
    victim_logs = [p for p in (data / "logs").rglob("*") if p.is_file()]
    targets = [str(data / name) for name in secrets if (data / name).exists()]
    targets += [str(p) for p in victim_files + victim_logs]
    assert victim_files
    assert len(targets) > 10, targets
    report = arena.attack("files", targets)
    readable = set(report["readable"])
    assert not readable & set(targets), "read or wrote what is not the model's"
    assert not [t for t in readable if t.startswith("written:")]
    own = (str(data / "models" / HOSTILE), str(data / "envs"), str(data / "homes"))
    assert all(path.startswith(own) for path in readable), sorted(readable)[:20]
    assert str(data) in report["refused"]  # the data dir itself cannot even be listed


def test_the_data_dir_is_regserve_s_alone(arena: Arena) -> None:
    """Issue 16, item 12: no file of regserve's is readable by another user, whatever reads it."""
    data = arena.server.data_dir
    files = [
        data / n
        for n in (
            "state.db",
            "state.db-wal",
            "mlflow.db",
            "admin-token",
            "webhook-secret",
            "mlflow-webhook-key",
        )
    ]
    files += [p for p in (data / "logs").rglob("*") if p.is_file()]
    modes = {str(p.relative_to(data)): oct(p.stat().st_mode & 0o777) for p in files if p.exists()}
    assert set(modes.values()) == {"0o600"}, modes
    dirs = {n: oct((data / n).stat().st_mode & 0o777) for n in ("logs", "artifacts", "model-env")}
    assert set(dirs.values()) == {"0o700"}, dirs
    assert oct(data.stat().st_mode & 0o777) == "0o711"


def test_no_worker_socket_answers_a_model(arena: Arena) -> None:
    run = arena.server.data_dir / "run"
    sockets = [str(p) for p in run.rglob("*.sock")]
    assert len(sockets) >= 1 + len(ATTACKS), sockets  # the victim's and the attacker's own
    report = arena.attack("sockets", sockets)
    assert report["tried"] >= len(sockets)
    assert report["answered"] == []


def test_no_regserve_process_can_be_signalled(arena: Arena) -> None:
    before = {v: d["worker_pid"] for v, d in arena.server.versions(VICTIM).items()}
    report = arena.attack("signals")
    assert "error" not in report, report
    assert report["killed"] == []
    assert report["refused"] >= 2  # regserve itself and the victim's worker at least
    assert arena.server.health()["status"] == "ok"
    assert {v: d["worker_pid"] for v, d in arena.server.versions(VICTIM).items()} == before


@pytest.mark.local_only
def test_a_fork_bomb_stops_at_the_cluster_cap_and_is_cleaned_up(arena: Arena) -> None:
    bomb = _serve_one(arena, "bomb", "fork")
    uid = _worker_uids(bomb, arena.server).pop()
    report = arena.attack("fork", model=bomb)
    assert 0 < report["forked"] < MAX_PIDS, report
    assert "Resource temporarily unavailable" in report["error"]
    assert len(_processes_of(uid)) >= report["forked"]
    assert arena.server.disable(bomb).status_code == 200
    wait_for(lambda: not _processes_of(uid), 60, f"every process of uid {uid} to be gone")


@pytest.mark.local_only
def test_memory_past_the_node_type_kills_only_the_hog(arena: Arena) -> None:
    mechanism = ResourceLimits(NodeTypes.defaults(), arena.server.data_dir / "probe").probe()
    if not mechanism.startswith("cgroup"):
        require_service(f"no writable cgroups here (node types fall back to {mechanism})")
    hog = _serve_one(arena, "hog", "memory", node_type="tiny")
    r = arena.attacker.post(
        f"/model/{hog}/1/invocations", timeout=120, json={"dataframe_records": [{"target": "2000"}]}
    )
    assert r.status_code != 200, r.text[:300]

    def killed_for_memory() -> bool:
        events = arena.server.events(hog)
        crashes = [e["message"] for e in events if e["event_type"] == "WORKER_CRASHED"]
        return any("400 MiB memory limit" in message for message in crashes)

    wait_for(killed_for_memory, 60, "the hog's WORKER_CRASHED event naming the memory limit")


@pytest.mark.local_only
def test_no_network_means_no_network(arena: Arena) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        accept = threading.Thread(target=_accept_all, args=(listener,), daemon=True)
        accept.start()
        outside = f"127.0.0.1:{listener.getsockname()[1]}"
        targets = [outside, f"127.0.0.1:{arena.server.port}"]
        # With the host's network the same attack reaches both (the test can fail).
        assert sorted(arena.attack("network", targets)["reached"]) == sorted(targets)
        hermit = _serve_one(arena, "hermit", "network", tags={"regserve.network": "none"})
        report = arena.attack("network", targets, model=hermit)
    assert report["reached"] == []
    assert len(report["refused"]) == 2


def test_the_other_model_answered_every_request(arena: Arena) -> None:
    """Last in the module: the victim's load ran through every attack above."""
    wait_for(lambda: arena.load.snapshot()[-1].at > arena.last_attack, 30, "an answer after")
    answers = arena.load.snapshot()
    assert answers[0].at < arena.first_attack  # the load ran through every attack
    assert arena.load.failures() == []


def test_a_bad_network_tag_is_refused(arena: Arena) -> None:
    r = arena.server.api(
        "PUT",
        "update-cluster-config",
        json={
            "registered_model_name": VICTIM,
            "desired_cluster_config": {
                "node_type_id": "local-default",
                "tags": [{"key": "regserve.network", "value": "off"}],
            },
        },
    )
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'none'" in r.json()["message"]


# -- helpers ---------------------------------------------------------------------------------------


def _serve_one(
    arena: Arena,
    name: str,
    kind: str,
    node_type: str = "local-default",
    tags: dict[str, str] | None = None,
) -> str:
    """Register ``name`` (one version running ``kind``) as the attacker, served by the admin
    with ``node_type`` and ``tags``."""
    admin = arena.server.client
    assert admin.post("/api/2.0/mlflow/registered-models/create", json={"name": name}).is_success
    grant = {
        "access_control_list": [
            {"service_principal_name": ATTACKER, "permission_level": "CAN_EDIT"}
        ]
    }
    assert admin.patch(f"/api/2.0/permissions/registered-models/{name}", json=grant).is_success
    token = arena.attacker.headers["Authorization"].removeprefix("Bearer ")
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, arena.server.url, token):
        log_hostile_version(name, kind)
    assert arena.server.enable(name).status_code == 200
    config = {
        "node_type_id": node_type,
        "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
    }
    r = arena.server.api(
        "PUT",
        "update-cluster-config",
        json={"registered_model_name": name, "desired_cluster_config": config},
    )
    assert r.status_code == 200, r.text
    wait_for(lambda: _applied(arena.server, name, config), 300, f"{name}'s cluster config")
    arena.server.wait_version_state(name, "1", READY, timeout=300)
    return name


def _applied(server: RegServeProcess, name: str, config: dict[str, Any]) -> bool:
    actual = server.status(name).get("actual_cluster_config") or {}
    return bool(
        actual.get("node_type_id") == config["node_type_id"]
        and json.dumps(actual.get("tags", []), sort_keys=True)
        == json.dumps(config["tags"], sort_keys=True)
    )


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _accept_all(listener: socket.socket) -> None:
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        connection.close()
