"""Two `regserve up` gateways over one PostgreSQL and one data dir (issue #9, items 2 and 3).

Exactly one leads and runs the controller; both serve every READY version by version, stage
and alias; the leader killed with SIGKILL is replaced within seconds and the new leader serves
a version registered afterwards; tokens and permissions changed through one gateway hold on
the other at once (the auth cache TTL is a minute here, so only the notification can do it);
requests captured through either gateway are in the PostgreSQL store's inference table, read
back the same through both (issue #23), and a table that cannot be written fails no request.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.support.cli import ok, run_cli
from tests.support.models import iris_frame
from tests.support.postgres import fresh_database
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

SCIM = "/api/2.0/preview/scim/v2"
PERMS = "/api/2.0/permissions/registered-models"
MODEL = "gw-iris"
READY = "VERSION_STATE_READY"
INFERENCE = "/api/2.0/regserve/inference-tables/read"


@dataclass
class Pair:
    a: RegServeProcess
    b: RegServeProcess
    store_uri: str


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    yield from fresh_database("regserve_gw")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, pg_database: str) -> Iterator[Pair]:
    data = tmp_path_factory.mktemp("gateways") / "data"
    settings = {
        "store_uri": pg_database,
        "auth_cache_ttl": "60",
        "inference_table_flush_seconds": "0.2",
    }
    a = RegServeProcess(data, **settings).start()
    b = RegServeProcess(data, **settings).start()
    try:
        yield Pair(a, b, pg_database)
    finally:
        b.close()
        a.close()


@pytest.fixture
def registry(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserRegistry]:
    with user_registry(monkeypatch, pair.a.url, ADMIN_TOKEN) as reg:
        yield reg


def _health(server: RegServeProcess) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"{server.url}/health", timeout=2).json())
    except httpx.HTTPError:
        return {}


def _payload() -> dict[str, Any]:
    frame, _ = iris_frame()
    return {"dataframe_records": frame.head(2).to_dict(orient="records")}


def _scores(server: RegServeProcess, ref: str, headers: dict[str, str] | None = None) -> str:
    """The version that answered ``ref`` on ``server`` (fails on anything but 200)."""
    kwargs: dict[str, Any] = {"headers": headers} if headers else {}
    r = server.score(MODEL, ref, _payload(), **kwargs)
    assert r.status_code == 200, f"{server.url} {ref}: {r.status_code} {r.text}"
    return r.headers["X-Model-Version"]


def _served_by(server: RegServeProcess, ref: str, version: str) -> bool:
    r = server.score(MODEL, ref, _payload())
    return r.status_code == 200 and r.headers.get("X-Model-Version") == version


def _ensure_served(pair: Pair, registry: UserRegistry) -> None:
    """Two versions of MODEL (v1 Staging, v2 Production and @champion), enabled through B."""
    if pair.b.versions(MODEL):
        return
    registry.register(MODEL)
    registry.register(MODEL, c=0.5)
    registry.stage(MODEL, "1", "Staging")
    registry.stage(MODEL, "2", "Production")
    registry.alias(MODEL, "champion", "2")
    assert pair.b.enable(MODEL).status_code == 200
    for version in ("1", "2"):
        pair.b.wait_version_state(MODEL, version, READY)


def _leader_and_follower(pair: Pair) -> tuple[RegServeProcess, RegServeProcess]:
    roles = {s.port: _health(s).get("role") for s in (pair.a, pair.b)}
    leaders = [s for s in (pair.a, pair.b) if roles[s.port] == "leader"]
    assert len(leaders) == 1, roles
    follower = pair.b if leaders[0] is pair.a else pair.a
    return leaders[0], follower


def test_one_gateway_leads_and_both_serve_by_version_stage_and_alias(
    pair: Pair, registry: UserRegistry
) -> None:
    leader, follower = _leader_and_follower(pair)
    assert leader is pair.a  # started first, alone on the database
    assert _health(follower)["leader"] == _health(leader)["gateway"]
    events = pair.a.client.get("/api/2.0/regserve/audit-events").json()["events"]
    elected = [e for e in events if e["event_type"] == "LEADER_ELECTED"]
    assert [e["principal"] for e in elected] == [f"gateway {_health(leader)['gateway']}"]

    _ensure_served(pair, registry)  # enabled through the follower, B
    for server in (pair.a, pair.b):
        assert wait_for(lambda s=server: _served_by(s, "1", "1"), 10, f"v1 on {server.url}")
        for ref, version in (
            ("2", "2"),
            ("Staging", "1"),
            ("production", "2"),
            ("champion", "2"),
            ("@champion", "2"),
            ("latest", "2"),
        ):
            assert _scores(server, ref) == version, (server.url, ref)
        missing = server.score(MODEL, "no-such-alias", _payload())
        assert missing.status_code == 404
        assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # Only the leader runs workers: one worker process per version, not two.
    pids = {v["worker_pid"] for v in pair.a.versions(MODEL).values()}
    assert len(pids) == 2
    assert None not in pids


def _split_answers(server: RegServeProcess, version: str) -> bool:
    """Ten requests to the split URL on ``server``, all answered by ``version``."""
    for _ in range(10):
        r = server.client.post(f"/model/{MODEL}/invocations", json=_payload())
        if r.status_code != 200 or r.headers.get("X-Model-Version") != version:
            return False
    return True


def test_a_traffic_config_set_on_either_gateway_holds_on_both(
    pair: Pair, registry: UserRegistry
) -> None:
    _ensure_served(pair, registry)
    leader, follower = _leader_and_follower(pair)
    traffic = "/api/2.0/regserve/endpoints/traffic"
    try:
        for setter, version in ((follower, "1"), (leader, "2")):
            body = {"registered_model_name": MODEL, "routes": [{"ref": version, "percent": 100}]}
            r = setter.client.put(traffic, json=body)
            assert r.status_code == 200, r.text
            for server in (leader, follower):
                wait_for(
                    lambda s=server, v=version: _split_answers(s, v),
                    15,
                    f"the split URL on {server.url} to answer from v{version}",
                )
                got = server.client.get(traffic, params={"registered_model_name": MODEL})
                assert got.json()["routes"] == body["routes"]
    finally:
        reset = {"registered_model_name": MODEL, "routes": []}
        assert leader.client.put(traffic, json=reset).status_code == 200


def test_token_and_permission_changes_hold_at_once_on_the_other_gateway(
    pair: Pair, registry: UserRegistry
) -> None:
    _ensure_served(pair, registry)
    name = f"gw-user-{uuid.uuid4().hex[:6]}"
    r = pair.a.client.post(f"{SCIM}/Users", json={"userName": name})
    assert r.status_code == 200, r.text
    made = pair.a.client.post(
        "/api/2.0/token-management/on-behalf-of/tokens",
        json={"application_id": name, "lifetime_seconds": 3600},
    ).json()
    headers = {"Authorization": f"Bearer {made['token_value']}"}

    # A permission granted through B lets the grantee score through A at once.
    denied = pair.a.score(MODEL, "1", _payload(), headers=headers)
    assert denied.status_code == 403  # and A has cached the model's ACL
    grant = {"access_control_list": [{"user_name": name, "permission_level": "CAN_READ"}]}
    assert pair.b.client.patch(f"{PERMS}/{MODEL}", json=grant).status_code == 200
    started = time.monotonic()
    wait_for(
        lambda: pair.a.score(MODEL, "1", _payload(), headers=headers).status_code == 200,
        5,
        "the grant made on B to hold on A",
        interval=0.05,
    )
    grant_seconds = time.monotonic() - started

    # A token revoked through A gets 401 on B at once (B has it cached, with a 60 s TTL).
    assert _scores(pair.b, "1", headers) == "1"
    token_id = made["token_info"]["token_id"]
    assert pair.a.client.delete(f"/api/2.0/token-management/tokens/{token_id}").status_code == 200
    started = time.monotonic()

    def refused() -> bool:
        r = pair.b.score(MODEL, "1", _payload(), headers=headers)
        return r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"

    wait_for(refused, 5, "the token revoked on A to be refused by B", interval=0.05)
    revoke_seconds = time.monotonic() - started
    print(
        f"grant held on A after {grant_seconds:.2f} s; revocation on B after {revoke_seconds:.2f} s"
    )


def _capture(server: RegServeProcess, on: bool) -> None:
    tags = [{"key": "regserve.inference_table", "value": "on"}] if on else []
    config = {"node_type_id": "local-default", "tags": tags}
    body = {"registered_model_name": MODEL, "desired_cluster_config": config}
    r = server.api("PUT", "update-cluster-config", json=body)
    assert r.status_code == 200, r.text


def _table(server: RegServeProcess, **params: Any) -> list[dict[str, Any]]:
    r = server.client.get(
        INFERENCE, params={"registered_model_name": MODEL, "limit": 10000, **params}
    )
    assert r.status_code == 200, r.text
    return list(r.json()["rows"])


def _sql(uri: str, statement: str) -> Any:
    engine = create_engine(uri)
    try:
        with engine.begin() as c:
            result = c.execute(text(statement))
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def test_requests_captured_through_either_gateway_are_read_through_both(
    pair: Pair, registry: UserRegistry, tmp_path: Any
) -> None:
    _ensure_served(pair, registry)
    _capture(pair.a, on=True)
    sent: dict[str, str] = {}  # request id -> the gateway's url that answered it
    try:

        def read_crosswise() -> bool:
            # Capture holds on a gateway within its settings' refresh (2 s): send until a
            # request through each is captured and read back through the other.
            for server in (pair.a, pair.b):
                rid = f"itable-{server.port}-{len(sent)}"
                assert _scores(server, "1", {"X-Request-Id": rid}) == "1"
                sent[rid] = server.url
            on_a = {row["request_id"] for row in _table(pair.a)}
            on_b = {row["request_id"] for row in _table(pair.b)}
            return any(sent[r] == pair.a.url for r in on_b) and any(
                sent[r] == pair.b.url for r in on_a
            )

        wait_for(read_crosswise, 30, "rows captured on each gateway to be read on the other")
    finally:
        _capture(pair.a, on=False)
    last = set(list(sent)[-2:])  # sent once both captured: wait until both are written

    def all_written() -> list[dict[str, Any]]:
        rows = _table(pair.b)
        return rows if last <= {row["request_id"] for row in rows} else []

    rows = wait_for(all_written, 10, "the last captured rows to be written")
    assert rows == _table(pair.a)  # one table: the same rows, the same order, either way
    assert {row["request_id"] for row in rows} <= set(sent)
    row = rows[0]
    assert (row["model"], row["version"], row["ref"], row["status_code"]) == (MODEL, "1", "1", 200)
    assert (row["caller"], row["shadow"]) == ("admin", False)
    assert json.loads(row["request"]) == _payload()
    assert "predictions" in json.loads(row["response"])
    newest = row["timestamp"]
    assert _table(pair.a, since=newest, limit=1) == [row]
    # The rows are in the database, not in the (here shared) data dir's Parquet files.
    stored = _sql(pair.store_uri, f"SELECT count(*) FROM inference_rows WHERE model = '{MODEL}'")
    assert stored == len(rows)
    assert not list((pair.a.data_dir / "inference").rglob("*.parquet"))
    # The CLI reads the same table (through the route).
    path = tmp_path / "rows.jsonl"
    ok(run_cli(pair.b.url, "inference-table", MODEL, str(path)))
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == [
        r["request_id"] for r in rows
    ]


def _failed_rows(server: RegServeProcess) -> float:
    families = text_string_to_metric_families(server.client.get("/metrics").text)
    return sum(
        s.value
        for f in families
        if f.name == "regserve_inference_table_rows"
        for s in f.samples
        if s.name.endswith("_total") and s.labels == {"model": MODEL, "outcome": "failed"}
    )


def test_a_table_that_cannot_be_written_fails_no_request_and_says_so(
    pair: Pair, registry: UserRegistry
) -> None:
    _ensure_served(pair, registry)
    _capture(pair.a, on=True)  # this gateway reloads its rates at once
    _sql(pair.store_uri, "ALTER TABLE inference_rows RENAME TO inference_rows_away")
    try:
        for n in range(10):
            r = pair.a.score(MODEL, "1", _payload(), headers={"X-Request-Id": f"lost-{n}"})
            assert r.status_code == 200, r.text
        wait_for(lambda: _failed_rows(pair.a) >= 10, 30, "the rows not written to be counted")
    finally:
        _sql(pair.store_uri, "ALTER TABLE inference_rows_away RENAME TO inference_rows")
        _capture(pair.a, on=False)
    failed = [e for e in pair.b.events(MODEL) if e["event_type"] == "INFERENCE_TABLE_WRITE_FAILED"]
    assert len(failed) == 1, failed  # one report a minute, not one per batch
    message = failed[0]["message"]
    assert "the requests were answered as usual" in message
    assert "PostgreSQL store's table inference_rows" in message
    for unsaid in ("dataframe_records", "INSERT"):  # no body, no SQL
        assert unsaid not in message


def test_the_leader_killed_the_follower_takes_over_and_serves_a_new_version(
    pair: Pair, registry: UserRegistry
) -> None:
    _ensure_served(pair, registry)
    leader, follower = _leader_and_follower(pair)
    assert leader.process is not None
    workers = {v: info["worker_pid"] for v, info in leader.versions(MODEL).items()}
    leader.process.send_signal(signal.SIGKILL)
    leader.process.wait()
    killed = time.monotonic()
    wait_for(lambda: _health(follower).get("role") == "leader", 15, "the follower to lead", 0.05)
    takeover = time.monotonic() - killed
    print(f"takeover after SIGKILL of the leader: {takeover:.2f} s")
    assert _health(follower)["leader"] == _health(follower)["gateway"]

    # It serves what was served, and a version registered now.
    with user_registry(pytest.MonkeyPatch(), follower.url, ADMIN_TOKEN) as reg:
        version = reg.register(MODEL, c=0.25)
    follower.wait_version_state(MODEL, version, READY, timeout=120)
    assert _scores(follower, version) == version
    assert _scores(follower, "latest") == version
    assert wait_for(lambda: _served_by(follower, "champion", "2"), 60, "champion again")
    # The dead leader's workers outlived it and were adopted: the same processes serve.
    now = follower.versions(MODEL)
    assert {v: now[v]["worker_pid"] for v in workers} == workers
    events = follower.client.get("/api/2.0/regserve/audit-events").json()["events"]
    assert [e["event_type"] for e in events if e["event_type"].startswith("LEADER")][-1] == (
        "LEADER_ELECTED"
    )
