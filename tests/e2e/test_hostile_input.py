"""Hostile input against a real ``regserve up`` (issue 16, items 6-11, 13, 14), over plain HTTP.

Each test does what an attacker did and checks for a clear 4xx or a bounded cost: never a
500, a dead worker, a stuck one, an echoed body, forged log lines or server paths shown to a
CAN_READ caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.models import iris_frame, log_broken_version
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "target"
BROKEN = "broken-target"
SCIM = "/api/2.0/preview/scim/v2"
PERMS = "/api/2.0/permissions/registered-models"
EP = "/api/2.0/preview/mlflow/endpoints"
WEBHOOK = "/api/2.0/regserve/registry-webhook"
SECRET = "hostile-input-webhook-secret"
ROWS = {"dataframe_records": iris_frame()[0].head(2).to_dict(orient="records")}
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
PER_CLIENT = 24


@dataclass
class World:
    server: RegServeProcess
    reader: dict[str, str]
    """Headers of a user holding CAN_READ on MODEL and BROKEN, nothing more."""

    def score(self, body: bytes, content_type: str, ref: str = "1", **kw: Any) -> httpx.Response:
        headers = {**self.reader, "Content-Type": content_type}
        url = f"{self.server.url}/model/{MODEL}/{ref}/invocations"
        return httpx.post(url, content=body, headers=headers, timeout=120, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = RegServeProcess(
        tmp_path_factory.mktemp("hostile") / "data",
        webhook_secret=SECRET,
        max_restarts="1",
        header_timeout=str(HEADER_TIMEOUT),
        body_timeout=str(BODY_TIMEOUT),
        body_min_rate="1000",
        max_connections_per_client=str(PER_CLIENT),
    ).start()
    try:
        with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
            reg.register(MODEL)
            assert server.enable(MODEL).status_code == 200
            server.wait_version_state(MODEL, "1", "VERSION_STATE_READY", timeout=300)
            # Fails to load: its state message and events are the texts with server paths.
            log_broken_version(BROKEN)
            assert server.enable(BROKEN).status_code == 200
        _admin(server, "POST", f"{SCIM}/Users", json={"userName": "reader"})
        acl = {"access_control_list": [{"user_name": "reader", "permission_level": "CAN_READ"}]}
        for name in (MODEL, BROKEN):
            _admin(server, "PATCH", f"{PERMS}/{name}", json=acl)
        token = _admin(
            server,
            "POST",
            "/api/2.0/token-management/on-behalf-of/tokens",
            json={"application_id": "reader", "lifetime_seconds": 3600},
        )
        yield World(server, {"Authorization": f"Bearer {token['token_value']}"})
    finally:
        server.close()


def _admin(server: RegServeProcess, method: str, url: str, **kw: Any) -> dict[str, Any]:
    r = server.client.request(method, url, **kw)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _scores_normally(world: World) -> None:
    started = time.monotonic()
    r = world.score(json.dumps(ROWS).encode(), "application/json")
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 15, "the worker is still busy"


def _server_log(world: World) -> str:
    return world.server.log_path.read_text(errors="replace")


# -- 6: the parse is bounded -----------------------------------------------------------------


def test_a_300000_column_csv_is_refused_at_once_and_the_worker_keeps_serving(
    world: World,
) -> None:
    columns = 300_000
    body = ",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join("1" * columns) + "\n"
    assert len(body) > 2_500_000  # the 2.9 MB of the report
    started = time.monotonic()
    r = world.score(body.encode(), "text/csv")
    assert time.monotonic() - started < 20  # 86 s (a 504 after 60) before
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "BAD_REQUEST"
    assert "300,000 columns" in r.json()["message"]
    assert "REGSERVE_MAX_INPUT_COLUMNS" in r.json()["message"]
    _scores_normally(world)


@pytest.mark.parametrize(
    ("case", "body", "content_type", "words"),
    [
        # A 200 KB CSV whose header names 1,004 columns over 100,000 one-value lines: a frame
        # of 10^8 NaN values (6 s of pandas, and its memory).
        (
            "sparse-csv",
            (",".join(f"c{i}" for i in range(1004)) + "\n" + "1\n" * 100_000).encode(),
            "text/csv",
            "REGSERVE_MAX_INPUT_VALUES",
        ),
        (
            "records-naming-many-columns",
            json.dumps({"dataframe_records": [{f"k{i}": 1} for i in range(20_000)]}).encode(),
            "application/json",
            "REGSERVE_MAX_INPUT_COLUMNS",
        ),
        (
            "too-many-rows",
            json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]] * 1_000_001}}).encode(),
            "application/json",
            "REGSERVE_MAX_INPUT_ROWS",
        ),
        (
            "deep-json",
            b'{"dataframe_records": [{"sepal_length": ' + b"[" * 900 + b"]" * 900 + b"}]}",
            "application/json",
            "REGSERVE_MAX_JSON_DEPTH",
        ),
        (
            "deep-params",
            b'{"dataframe_records": [], "params": ' + b'{"a":' * 900 + b"1" + b"}" * 901,
            "application/json",
            "REGSERVE_MAX_JSON_DEPTH",
        ),
    ],
)
def test_inputs_over_a_limit_are_a_400_naming_it(
    world: World, case: str, body: bytes, content_type: str, words: str
) -> None:
    r = world.score(body, content_type)
    assert r.status_code == 400, (case, r.text[:500])
    assert r.json()["error_code"] == "BAD_REQUEST"
    assert words in r.json()["message"], r.json()["message"]
    _scores_normally(world)


# -- 7: errors quote a bounded excerpt --------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_a_16_mb_random_body_gets_a_small_error(world: World, content_type: str) -> None:
    body = os.urandom(16_000_000)
    r = world.score(body, content_type)
    assert r.status_code == 400
    assert len(r.content) < 16_384, len(r.content)  # 112 MB before: the input echoed
    message = r.json()["message"]
    assert message.startswith("Invalid input. Ensure that input is a valid"), message[:200]
    assert re.search(r"\(cut at \d+ characters\)|\(\d+ characters cut\)", message), message
    _scores_normally(world)


def test_a_long_string_in_the_input_is_quoted_cut(world: World) -> None:
    body = json.dumps({"inputs": "x" * 1_000_000}).encode()
    r = world.score(body, "application/json")
    assert r.status_code == 400
    assert len(r.content) < 16_384, len(r.content)
    assert "characters cut" in r.json()["message"]


# -- 8: made-up refs and models make no metric series ----------------------------------------


def _series(world: World) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    text = world.server.client.get("/metrics").text
    return {
        (s.name, frozenset(s.labels.items()))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("regserve_request")
    }


def _rss_kb(pid: int) -> int:
    found = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    assert found is not None
    return int(found[1])


def test_unknown_refs_and_models_do_not_grow_the_metrics(world: World) -> None:
    server = world.server
    assert server.process is not None
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    body = json.dumps(ROWS).encode()
    with httpx.Client(base_url=server.url, headers=admin, timeout=30) as http:

        def send_each_kind(i: int) -> None:
            r = http.post(f"/model/{MODEL}/{i}-{'r' * 60_000}/invocations", content=body)
            assert r.status_code == 404
            # A model that does not exist (only an admin gets this far).
            r = http.post(f"/model/made-up-{i}-{uuid.uuid4().hex}/1/invocations", content=body)
            assert r.status_code == 404
            # More digits than int() takes (4,300): version 1, not a 500.
            r = http.post(f"/model/{MODEL}/{'0' * (5000 + i)}1/invocations", content=body)
            assert r.status_code == 200, r.text[:300]

        send_each_kind(0)
        before, rss_before = _series(world), _rss_kb(server.process.pid)
        for i in range(1, 501):  # 30 MB of refs in all
            send_each_kind(i)
        after, rss_after = _series(world), _rss_kb(server.process.pid)
    assert after == before, after - before  # not one new series
    # The 30 MB of refs are not kept (they were: a cache of series keyed by the raw ref).
    assert rss_after - rss_before < 12_000, (rss_before, rss_after)


# -- 9: a wrong method is a 405 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/health", "GET"),
        ("HEAD", "/health", "GET"),
        ("GET", WEBHOOK, "POST"),
        ("DELETE", "/ui/signin", "GET, POST"),
        ("GET", f"{EP}/enable", "POST"),
        ("DELETE", f"{EP}/get-status", "GET"),
        ("GET", f"/model/{MODEL}/1/invocations", "POST"),
    ],
)
def test_a_wrong_method_is_a_405_naming_the_right_ones(
    world: World, method: str, path: str, allowed: str
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = httpx.request(method, f"{world.server.url}{path}", headers=headers, timeout=30)
    assert r.status_code == 405, (r.status_code, r.text)
    assert r.headers["allow"] == allowed
    if method != "HEAD":
        assert r.json()["error_code"] == "METHOD_NOT_ALLOWED"
    assert "Traceback" not in _server_log(world)


# -- 10: webhook timestamps that never go stale ---------------------------------------------


def _signed(timestamp: str, body: bytes) -> dict[str, str]:
    delivery = str(uuid.uuid4())
    signed = f"{delivery}.{timestamp}.".encode() + body
    digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
    }


@pytest.mark.parametrize(
    "timestamp", ["nan", "NaN", "inf", "-inf", "1e400", "-5", "+1", "1_0", "0x10"]
)
def test_a_signed_delivery_with_a_timestamp_that_is_no_time_is_refused(
    world: World, timestamp: str
) -> None:
    body = json.dumps({"entity": "model_version", "action": "created"}).encode()
    headers = _signed(timestamp, body)
    r = httpx.post(f"{world.server.url}{WEBHOOK}", content=body, headers=headers, timeout=30)
    assert r.status_code == 401, r.text
    assert r.json()["error_code"] == "UNAUTHENTICATED"
    fresh = _signed(str(int(time.time())), body)  # the same secret, a real time: accepted
    r = httpx.post(f"{world.server.url}{WEBHOOK}", content=body, headers=fresh, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"]


# -- 11: caller strings cannot forge log lines ----------------------------------------------


def test_a_newline_in_a_tag_or_a_model_name_does_not_forge_a_log_line(world: World) -> None:
    server = world.server
    forged = "FORGED 2099-01-01 ERROR regserve: all tokens leaked"
    config = {"node_type_id": "local-default", "tags": [{"key": "team", "value": f"x\n{forged}"}]}
    update = {"registered_model_name": MODEL, "desired_cluster_config": config}
    r = server.api("PUT", "update-cluster-config", json=update)
    assert r.status_code == 200, r.text
    wait_for(lambda: "team=x\\n" + forged in _server_log(world), 30, "the event's log line")
    name = f"evil\n{forged}\r\x1b[2Jname"
    created = server.client.post(
        "/api/2.0/mlflow/registered-models/create", json={"name": name}
    ).status_code
    if created == 200:  # MLflow takes such a name; enabling it logs its events
        server.enable(name)
        wait_for(lambda: "evil\\nFORGED" in _server_log(world), 30, "the enable's log line")
    lines = _server_log(world).splitlines()
    assert not [line for line in lines if line.startswith("FORGED")]
    assert "\x1b[2J" not in _server_log(world)


# -- 13: no server paths for CAN_READ callers -----------------------------------------------


def test_logs_state_messages_and_events_name_paths_relative_to_the_data_dir(world: World) -> None:
    server = world.server
    data_dir = str(server.data_dir.resolve())
    reader = httpx.Client(base_url=server.url, headers=world.reader, timeout=30)
    server.wait_version_state(BROKEN, "1", "VERSION_STATE_FAILED", timeout=300)
    params = {"registered_model_name": MODEL, "endpoint_version_name": "1"}
    logs = reader.get(f"{EP}/get-version-logs", params=params).json()["logs"]
    assert "<data-dir>/models/" in logs, logs[-2000:]
    texts = [logs]
    for name in (MODEL, BROKEN):
        q = {"registered_model_name": name}
        versions = reader.get(f"{EP}/list-versions", params=q).json()["endpoint_versions"]
        texts += [v["state_message"] for v in versions]
        status = reader.get(f"{EP}/get-status", params=q).json()["endpoint_status"]
        texts.append(status["state_message"])
        events = reader.get(f"{EP}/get-event-history", params=q).json()["events"]
        texts += [e["message"] for e in events]
        logs_query = {**q, "endpoint_version_name": "1"}
        texts.append(reader.get(f"{EP}/get-version-logs", params=logs_query).text)
    failed = reader.get(f"/model/{BROKEN}/1/invocations").text  # 503: it failed, and why
    texts.append(failed)
    assert any("<data-dir>/" in t for t in texts[1:]), texts
    leaking = [t for t in texts if data_dir in t or str(server.data_dir) in t]
    assert not leaking, leaking[0][:2000]
    reader.close()


# -- 14: slow clients are cut off, and one address holds a bounded number of connections ----


def _connect(world: World) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", world.server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _answer(sock: socket.socket, until: bytes | None = None) -> bytes:
    """What the server sends until it closes the connection (or sends ``until`` last)."""
    data = b""
    while not (until and data.endswith(until)):
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk
    return data


def test_headers_sent_slowly_get_a_408(world: World) -> None:
    request = f"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: {'a' * 40}\r\n\r\n".encode()
    sock = _connect(world)
    started = time.monotonic()
    for byte in request[:30]:  # 30 bytes over 7.5 s, or until the server answers
        if select.select([sock], [], [], 0.25)[0]:
            break
        sock.sendall(bytes([byte]))
    answer = _answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"REQUEST_TIMEOUT"' in answer
    assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_connection_that_sends_nothing_gets_a_408(world: World) -> None:
    sock = _connect(world)
    started = time.monotonic()
    answer = _answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert HEADER_TIMEOUT - 0.5 < time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_body_sent_slowly_gets_a_408_and_a_fast_large_one_does_not(world: World) -> None:
    head = (
        f"POST /model/{MODEL}/1/invocations HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {world.reader['Authorization']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
    ).encode()
    sock = _connect(world)
    sock.sendall(head)
    started = time.monotonic()
    for _ in range(20):  # 10 bytes a second (far below 1000 bytes/s), until the server answers
        if select.select([sock], [], [], 0.5)[0]:
            break
        sock.sendall(b"x" * 5)
    answer = _answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < BODY_TIMEOUT + 4
    # A body at a fair pace is not cut, however long it takes: 16 KB a second for 6 s, thrice
    # the body timeout (it allows 2 s plus 1 s per 1000 bytes).
    rows = iris_frame()[0].head(1).to_dict(orient="records") * 1000
    body = json.dumps({"dataframe_records": rows}).encode()
    sock = _connect(world)
    sock.sendall(head.replace(b"10000", str(len(body)).encode()))
    started = time.monotonic()
    for offset in range(0, len(body), 8192):
        assert not select.select([sock], [], [], 0.5)[0], _answer(sock)
        sock.sendall(body[offset : offset + 8192])
    answer = _answer(sock, until=b"}")
    sock.close()
    assert time.monotonic() - started > 2 * BODY_TIMEOUT
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    _scores_normally(world)


def test_one_address_holds_a_bounded_number_of_connections(world: World) -> None:
    socks = [_connect(world) for _ in range(PER_CLIENT + 1)]
    try:
        time.sleep(0.5)  # refusals are sent at once; the admitted wait (408 after 2 s)
        readable, _, _ = select.select(socks, [], [], 0)
        refused = [sock.recv(4096) for sock in readable]
        assert refused, "every connection was admitted"
        assert all(a.startswith(b"HTTP/1.1 429") for a in refused), refused
        assert b"REGSERVE_MAX_CONNECTIONS_PER_CLIENT" in refused[0]
        assert len(refused) <= 6  # the others are this test process's own open connections
    finally:
        for sock in socks:
            sock.close()
    # Once they are closed, the address is welcome again.
    wait_for(
        lambda: httpx.get(f"{world.server.url}/health", timeout=5).status_code == 200,
        10,
        "a new connection to be admitted",
    )
