"""The store's contract, run against SQLite and against the PostgreSQL server on this machine."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from regserve.errors import AlreadyExistsError
from regserve.store import ClusterConfig, GrantRecord, StateStore, TokenRecord
from regserve.store.inference_rows import CAPTURED_COLUMNS
from regserve.traffic import TrafficRoute, TrafficSplit
from tests.support.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        uris: Iterator[str] = iter([f"sqlite:///{tmp_path / 'state.db'}"])
    else:
        uris = fresh_database("regserve_test")
    uri = next(uris)
    s = StateStore(uri)
    s.migrate()
    s.migrate()  # idempotent
    yield s
    s.close()
    next(uris, None)


DEFAULT = ClusterConfig("local-default")


def test_enable_disable_roundtrip(store: StateStore) -> None:
    assert store.get_endpoint("m") is None
    assert store.enable("m", DEFAULT) is True
    assert store.enable("m", DEFAULT) is False
    ep = store.get_endpoint("m")
    assert ep is not None
    assert ep.enabled
    assert ep.state == "ENDPOINT_STATE_PENDING"
    assert [e.model_name for e in store.list_endpoints()] == ["m"]
    store.put_version("m", "1", "VERSION_STATE_READY", "ok", worker_pid=42)
    assert store.disable("m") is True
    assert store.disable("m") is False
    assert store.list_endpoints() == []
    assert store.list_versions("m") == []
    assert store.get_endpoint("m") is not None  # kept, disabled, for its config and events


def test_config_survives_disable(store: StateStore) -> None:
    store.enable("m", DEFAULT)
    custom = ClusterConfig("local-default", (("team", "fraud"), ("env", "prod")))
    store.set_desired_config("m", custom)
    store.set_actual_config("m", custom)
    store.disable("m")
    store.enable("m", DEFAULT)
    ep = store.get_endpoint("m")
    assert ep is not None
    assert ep.desired_config == custom
    assert ep.actual_config is None


def test_a_model_created_again_under_the_name_starts_bare(store: StateStore) -> None:
    store.enable("m", DEFAULT, model_created_at=1000)
    endpoint = store.get_endpoint("m")
    assert endpoint is not None
    assert endpoint.model_created_at == 1000
    custom = ClusterConfig("local-default", (("team", "fraud"),))
    store.set_desired_config("m", custom)
    store.disable("m")
    store.enable("m", DEFAULT, model_created_at=1000)  # the same model: its config is kept
    endpoint = store.get_endpoint("m")
    assert endpoint is not None
    assert endpoint.desired_config == custom
    store.disable("m")
    store.enable("m", DEFAULT, model_created_at=2000)  # another model of that name
    endpoint = store.get_endpoint("m")
    assert endpoint is not None
    assert (endpoint.desired_config, endpoint.model_created_at) == (DEFAULT, 2000)
    store.set_model_created_at("m", 3000)
    assert store.get_endpoint("m") == dataclasses.replace(endpoint, model_created_at=3000)


def test_traffic_config_roundtrip_kept_over_disable_dropped_for_a_new_model(
    store: StateStore,
) -> None:
    assert store.set_traffic("m", TrafficSplit((TrafficRoute("1", 100),))) is False  # unknown
    store.enable("m", DEFAULT, model_created_at=1000)
    endpoint = store.get_endpoint("m")
    assert endpoint is not None
    assert endpoint.traffic is None
    split = TrafficSplit(
        (TrafficRoute("1", 90), TrafficRoute("champion", 10)), TrafficRoute("Staging", 5)
    )
    assert store.set_traffic("m", split) is True
    store.disable("m")
    store.enable("m", DEFAULT, model_created_at=1000)
    endpoint = store.get_endpoint("m")
    assert endpoint is not None
    assert endpoint.traffic == split
    assert store.set_traffic("m", None) is True
    endpoint = store.get_endpoint("m")
    assert endpoint is not None
    assert endpoint.traffic is None
    store.set_traffic("m", split)
    store.disable("m")
    store.enable("m", DEFAULT, model_created_at=2000)  # another model of that name
    endpoint = store.get_endpoint("m")
    assert endpoint is not None
    assert endpoint.traffic is None


def test_events_since(store: StateStore) -> None:
    first = store.add_event("m", "A", "a")
    assert [e.event_type for e in store.list_events("m", since=first.timestamp)] == ["A"]
    assert store.list_events("m", since=first.timestamp + 1) == []


def test_owners_of_runs_and_logged_models(store: StateStore) -> None:
    alice = store.create_principal("alice", "user", created_at=1)
    bob = store.create_principal("bob", "user", created_at=1)
    store.record_owner("run", "r1", alice.id, 5)
    store.record_owner("run", "r1", bob.id, 6)  # the first record stands
    store.record_owner("logged_model", "r1", bob.id, 7)
    assert store.owner_of("run", "r1") == alice.id
    assert store.owner_of("logged_model", "r1") == bob.id
    assert store.owner_of("run", "r2") is None
    store.delete_principal(alice.id)
    assert store.owner_of("run", "r1") is None  # no later principal inherits it
    assert store.owner_of("logged_model", "r1") == bob.id


def test_versions_sorted_numerically_and_merged(store: StateStore) -> None:
    store.enable("m", DEFAULT)
    for v in ["10", "2", "1"]:
        store.put_version("m", v, "VERSION_STATE_PENDING", "", worker_pid=None)
    store.put_version("m", "2", "VERSION_STATE_READY", "Serving.", worker_pid=7)
    versions = store.list_versions("m")
    assert [v.version for v in versions] == ["1", "2", "10"]
    assert versions[1].state == "VERSION_STATE_READY"
    assert versions[1].extra == {"worker_pid": 7}
    store.delete_version("m", "10")
    assert [v.version for v in store.list_versions("m")] == ["1", "2"]
    # With the endpoint's new status: both change together.
    store.delete_version("m", "2", ("ENDPOINT_STATE_PENDING", "Version 1 is loading."))
    assert [v.version for v in store.list_versions("m")] == ["1"]
    ep = store.get_endpoint("m")
    assert ep is not None
    assert (ep.state, ep.state_message) == ("ENDPOINT_STATE_PENDING", "Version 1 is loading.")


def test_events_newest_window_oldest_first(store: StateStore) -> None:
    for i in range(5):
        store.add_event("m", "E", f"msg {i}", version=str(i % 2))
    store.add_event("other", "E", "not mine")
    events = store.list_events("m", limit=3)
    assert [e.message for e in events] == ["msg 2", "msg 3", "msg 4"]
    assert [e.message for e in store.list_events("m", version="1")] == ["msg 1", "msg 3"]


def test_metrics_accumulate_per_minute(store: StateStore) -> None:
    row = {
        "model_name": "m",
        "version": "1",
        "minute": 60_000,
        "requests": 3,
        "errors": 1,
        "latency_p50_ms": 2.0,
        "latency_p99_ms": 9.0,
    }
    store.add_metrics([row])
    store.add_metrics([{**row, "requests": 2, "errors": 0, "latency_p99_ms": 4.0}])
    points = {(p.key, p.version): p.value for p in store.metric_history("m")}
    assert points[("requests_per_minute", "1")] == 5
    assert points[("errors_per_minute", "1")] == 1
    assert points[("latency_p99_ms", "1")] == 9.0
    assert not {key for key, _ in points} & {"batch_size_mean", "queue_depth_max"}


def test_batch_sizes_and_queue_depth_accumulate_per_minute(store: StateStore) -> None:
    row = {
        "model_name": "m",
        "version": "2",
        "minute": 120_000,
        "requests": 6,
        "errors": 0,
        "latency_p50_ms": 1.0,
        "latency_p99_ms": 2.0,
        "batches": 2,
        "batched_requests": 6,
        "batch_size_max": 4,
        "queue_depth_max": 5,
    }
    store.add_metrics([row])
    store.add_metrics([{**row, "batches": 2, "batched_requests": 1, "batch_size_max": 1}])
    store.add_metrics([{**row, "batches": None, "batched_requests": None, "queue_depth_max": 7}])
    store.add_metrics(
        [
            {
                **row,
                "minute": 180_000,
                "batches": None,
                "batched_requests": None,
                "batch_size_max": None,
                "queue_depth_max": 0,
            }
        ]
    )
    points = {(p.key, p.timestamp): p.value for p in store.metric_history("m")}
    assert points[("batch_size_mean", 120_000)] == 1.75  # 7 requests in 4 batches
    assert points[("batch_size_max", 120_000)] == 4
    assert points[("queue_depth_max", 120_000)] == 7
    assert points[("queue_depth_max", 180_000)] == 0
    assert ("batch_size_mean", 180_000) not in points  # no batch seen: no point, not a zero
    assert ("batch_size_max", 180_000) not in points


def _alembic(store: StateStore, step: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files("regserve.store") / "migrations"))
    engine = create_engine(store.uri)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            getattr(command, step)(config, revision)
    finally:
        engine.dispose()


def test_a_minute_stored_before_migration_0006_gains_batches_later(store: StateStore) -> None:
    _alembic(store, "downgrade", "0005_tracking_owners")
    engine = create_engine(store.uri)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO metric_history (model_name, version, minute, requests, errors, "
                "latency_p50_ms, latency_p99_ms) VALUES ('m', '1', 60000, 4, 0, 1.0, 2.0)"
            )
        )
    engine.dispose()
    _alembic(store, "upgrade", "head")
    points = {p.key: p.value for p in store.metric_history("m")}
    assert points == {
        "requests_per_minute": 4,
        "errors_per_minute": 0,
        "latency_p50_ms": 1.0,
        "latency_p99_ms": 2.0,
    }
    row = {"model_name": "m", "version": "1", "minute": 60_000, "requests": 2, "errors": 0}
    row |= {"latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "batches": 2, "batched_requests": 3}
    store.add_metrics([{**row, "batch_size_max": 2, "queue_depth_max": 1}])
    points = {p.key: p.value for p in store.metric_history("m")}
    assert points["batch_size_mean"] == 1.5
    assert points["batch_size_max"] == 2
    assert points["queue_depth_max"] == 1
    assert points["requests_per_minute"] == 6


# -- principals, tokens, permissions (store/access.py) ---------------------------------------


def test_principals_are_unique_and_found_by_name_or_application_id(store: StateStore) -> None:
    admin = store.ensure_admin_principal("admin", 1)
    assert store.ensure_admin_principal("admin", 2) == admin
    assert admin.is_admin
    sp = store.create_principal("bot", "service_principal", application_id="app-1", created_at=3)
    with pytest.raises(AlreadyExistsError):
        store.create_principal("bot", "user", created_at=4)
    assert store.find_principal("app-1") == sp
    assert store.find_principal("bot", "service_principal") == sp
    assert store.find_principal("bot", "user") is None
    assert [p.name for p in store.list_principals()] == ["admin", "bot"]
    assert store.get_principal(sp.id) == sp


def test_tokens_by_hash_list_and_revoke(store: StateStore) -> None:
    owner = store.create_principal("u", "user", created_at=1)
    record = TokenRecord("t1", owner.id, "ci", 10, -1, "admin")
    store.add_token(record, "a" * 64)
    found = store.token_by_hash("a" * 64)
    assert found == (record, owner)
    assert store.token_by_hash("b" * 64) is None
    assert store.list_tokens(owner.id) == [record]
    assert store.revoke_token("t1", 20, principal_id=owner.id + 1) is None  # not theirs
    assert store.revoke_token("t1", 20) is not None
    assert store.revoke_token("t1", 21) is None  # already revoked
    assert store.list_tokens() == []
    found = store.token_by_hash("a" * 64)
    assert found is not None
    assert found[0].revoked_at == 20


def test_grants_put_replace_rename_drop(store: StateStore) -> None:
    read = GrantRecord("principal", "1", "CAN_READ")
    group = GrantRecord("group", "users", "CAN_READ")
    store.put_grants("m", [read], replace=False)
    store.put_grants("m", [GrantRecord("principal", "1", "CAN_EDIT"), group], replace=False)
    assert store.get_grants("m") == [group, GrantRecord("principal", "1", "CAN_EDIT")]
    store.put_grants("m", [read], replace=True)
    assert store.get_grants("m") == [read]
    store.rename_grants("m", "n")
    assert store.get_grants("m") == []
    assert store.get_grants("n") == [read]
    store.drop_grants("n")
    assert store.get_grants("n") == []


def test_audit_events_name_the_principal(store: StateStore) -> None:
    store.add_event("m", "VERSION_READY", "ready", "1")
    store.add_event("", "TOKEN_CREATED", "token t1", principal="admin")
    store.add_event("m", "SERVING_ENABLED", "on", principal="alice")
    audit = store.list_audit_events()
    assert [(e[1], e[2], e[4]) for e in audit] == [
        ("", "TOKEN_CREATED", "admin"),
        ("m", "SERVING_ENABLED", "alice"),
    ]
    assert store.list_events("m")[-1].principal == "alice"


def test_reset_versions_after_a_restart(store: StateStore) -> None:
    store.enable("m", DEFAULT)
    store.put_version("m", "1", "VERSION_STATE_READY", "Serving.", worker_pid=42)
    store.reset_versions("restarted")
    (version,) = store.list_versions("m")
    assert (version.state, version.state_message) == ("VERSION_STATE_PENDING", "restarted")


def test_published_routes_roundtrip(store: StateStore) -> None:
    assert store.all_routes() == {}
    store.put_routes("m", '{"versions": []}')
    store.put_routes("m", '{"versions": [1]}')
    store.put_routes("n", "{}")
    assert store.all_routes() == {"m": '{"versions": [1]}', "n": "{}"}
    store.delete_routes("m")
    assert store.all_routes() == {"n": "{}"}


def test_change_log_and_leader(store: StateStore) -> None:
    start = store.last_change_id()
    store.add_change("tokens", "", "gw-a")
    store.add_change("grants", "m", "gw-b")
    changes = store.changes_after(start)
    assert [(c.kind, c.key, c.origin) for c in changes] == [
        ("tokens", "", "gw-a"),
        ("grants", "m", "gw-b"),
    ]
    assert store.changes_after(changes[-1].id) == []
    assert store.get_leader("controller") is None
    store.set_leader("controller", "127.0.0.1:1/2")
    store.set_leader("controller", "127.0.0.1:3/4")
    leader = store.get_leader("controller")
    assert leader is not None
    assert leader.holder == "127.0.0.1:3/4"


def test_inference_rows_newest_first_since_a_time_and_deleted_before_one(
    store: StateStore,
) -> None:
    day = dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc)

    def row(n: int, model: str = "m") -> dict[str, object]:
        values: dict[str, object] = dict.fromkeys(CAPTURED_COLUMNS, False)
        values.update(request_id=f"r{n}", timestamp=day + dt.timedelta(hours=n), model=model)
        values.update(version="1", ref="1", caller="alice", latency_ms=1.0, request="{}")
        values.update(route=None, status_code=200, content_type=None, response=None)
        return values

    store.add_inference_rows([row(0), row(1), row(2), row(5, "other")])
    store.add_inference_rows([])
    newest = store.inference_rows("m", None, 2)
    assert [r["request_id"] for r in newest] == ["r2", "r1"]
    assert list(newest[0]) == list(CAPTURED_COLUMNS)
    assert newest[0]["timestamp"] == day + dt.timedelta(hours=2)  # aware, in UTC
    since = store.inference_rows("m", day + dt.timedelta(hours=1), 10)
    assert [r["request_id"] for r in since] == ["r2", "r1"]
    assert store.delete_inference_rows(day + dt.timedelta(hours=2)) == 2
    assert [r["request_id"] for r in store.inference_rows("m", None, 10)] == ["r2"]
    assert [r["request_id"] for r in store.inference_rows("other", None, 10)] == ["r5"]
