"""The template worker as a real process: it loads the model once and forks serving replicas
that answer like any worker, outlive it, and whose exit it reports."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regserve.worker import wire
from regserve.worker.exits import EXIT_FORK_UNSAFE
from tests.conformance_cases import SPLIT
from tests.support.models import save_threaded_model
from tests.support.processes import alive

from .conftest import WireClient, WorkerProcess

JSON = "application/json"
GOOD = json.dumps({"dataframe_split": SPLIT}).encode()


class Control:
    """The supervisor's side of the template's control socket (wire frames, one REPLY each)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self._reader = wire.FrameReader()
        self._frames: list[wire.Frame] = []
        self._ids = iter(range(1, 1 << 30))

    def fork(self, path: Path) -> wire.Reply:
        return self.ask(
            lambda rid: wire.encode_fork(rid, {"socket": str(path), "orphan_timeout": 0})
        )

    def exit(self, pid: int) -> wire.Reply:
        return self.ask(lambda rid: wire.encode_exit(rid, {"pid": pid}))

    def standby(self, path: Path) -> wire.Reply:
        return self.ask(lambda rid: wire.encode_standby(rid, {"socket": str(path)}))

    def ask(self, frame: Any) -> wire.Reply:
        request_id = next(self._ids)
        self.sock.sendall(frame(request_id))
        while not self._frames:
            data = self.sock.recv(65536)
            assert data, "the template closed the connection"
            self._frames += self._reader.feed(data)
        answer = self._frames.pop(0)
        assert (answer.request_id, answer.kind) == (request_id, wire.Kind.REPLY)
        return wire.decode_reply(answer.payload)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def template(iris_model_dir: Path, short_dir: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(iris_model_dir, short_dir, args=("--template", "--orphan-timeout", "4"))
    deadline = time.monotonic() + 90
    while not process.socket_path.exists():
        assert process.proc.poll() is None, process.log()
        assert time.monotonic() < deadline, process.log()
        time.sleep(0.05)
    yield process
    process.stop()


def _wait_serving(path: Path, timeout: float = 10) -> WireClient:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return WireClient(path)
        except OSError:
            assert time.monotonic() < deadline, f"nothing serves on {path}"
            time.sleep(0.01)


def test_a_forked_replica_serves_and_its_exit_is_reported(
    template: WorkerProcess, short_dir: Path
) -> None:
    control = Control(template.socket_path)
    replica_socket = short_dir / "r1.sock"
    started = time.monotonic()
    answer = control.fork(replica_socket)
    assert answer["ok"]
    pid = answer["pid"]
    client = _wait_serving(replica_socket)
    print(f"\nforked replica serving {time.monotonic() - started:.3f} s after the request")
    assert client.ping()["pid"] == pid
    response = client.call(JSON, GOOD)
    assert (response.status, json.loads(response.body)) == (200, {"predictions": [0, 2, 1]})
    assert client.call(JSON, b"{broken").status == 400  # a bad request does not kill it
    client.close()
    assert os.getsid(pid) == pid  # its own session: a signal to the template's group misses it
    # Its output goes where the template's goes (the version's log).
    assert f"[pid {pid}]: forked from template pid {template.proc.pid}" in template.log()

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (code := control.exit(pid)["code"]) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert code == -signal.SIGKILL
    assert control.exit(1)["code"] is None  # not one of its replicas
    control.close()


def test_bad_control_requests_get_an_error_and_the_template_goes_on(
    template: WorkerProcess, short_dir: Path
) -> None:
    control = Control(template.socket_path)
    answer = control.ask(lambda rid: wire.encode_request(rid, JSON, GOOD))
    assert answer == {"ok": False, "error": "a template does not take REQUEST"}
    unknown = control.ask(lambda rid: wire.HEADER.pack(2, rid, 99) + b"{}")
    assert "unknown frame kind 99" in unknown["error"]
    for body in (b"{}", b"not json", b"[]"):
        bad = control.ask(lambda rid, body=body: wire.encode_frame(rid, wire.Kind.FORK, body))
        assert not bad["ok"]
        assert "bad request" in bad["error"]
    answer = control.fork(short_dir / "ok.sock")
    _wait_serving(short_dir / "ok.sock").close()
    os.kill(answer["pid"], signal.SIGTERM)
    control.close()


def test_replicas_outlive_the_template_which_stops_when_orphaned(
    template: WorkerProcess, short_dir: Path
) -> None:
    control = Control(template.socket_path)
    pid = control.fork(short_dir / "r.sock")["pid"]
    control.close()  # no supervisor any more: the template stops after --orphan-timeout 4
    assert template.proc.wait(timeout=30) == 0
    assert "no supervisor for 4 s, stopping" in template.log()
    assert not template.socket_path.exists()
    client = _wait_serving(short_dir / "r.sock")
    assert client.call(JSON, GOOD).status == 200  # the replica serves on without it
    client.close()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_model_that_starts_threads_is_not_forked(
    tmp_path_factory: pytest.TempPathFactory, short_dir: Path
) -> None:
    """A forked child has only the forking thread: a template refuses to fork a model that
    runs threads of its own after loading, and says which (its supervisor starts fresh
    workers instead)."""
    model_dir = save_threaded_model(tmp_path_factory.mktemp("threaded") / "model")
    process = WorkerProcess(model_dir, short_dir, args=("--template",))
    assert process.proc.wait(timeout=120) == EXIT_FORK_UNSAFE, process.log()
    log = process.log()
    assert "not safe to fork once loaded" in log
    assert "the model started threads while loading: model-refresher" in log
    assert not process.socket_path.exists()
    process.stop()
    # Without --template the same model serves: threads are fine in a worker that never forks.
    worker = WorkerProcess(model_dir, short_dir)
    worker.wait_ready()
    client = WireClient(worker.socket_path)
    response = client.call(JSON, GOOD)
    assert (response.status, json.loads(response.body)) == (200, {"predictions": [3, 3, 3]})
    client.close()
    assert worker.stop() == 0


def test_a_standby_outlives_the_template_and_forks_replicas(
    template: WorkerProcess, short_dir: Path
) -> None:
    control = Control(template.socket_path)
    standby_socket = short_dir / "standby.sock"
    standby_pid = control.standby(standby_socket)["pid"]
    deadline = time.monotonic() + 10
    while not standby_socket.exists():
        assert time.monotonic() < deadline, template.log()
        time.sleep(0.01)
    standby = Control(standby_socket)
    assert os.getsid(standby_pid) == standby_pid  # its own session, like a replica
    os.kill(template.proc.pid, signal.SIGKILL)
    template.proc.wait(timeout=10)
    assert alive(standby_pid)  # the template's death is not the standby's
    started = time.monotonic()
    replica_pid = standby.fork(short_dir / "s1.sock")["pid"]
    client = _wait_serving(short_dir / "s1.sock")
    print(f"\nreplica forked from the standby serving {time.monotonic() - started:.3f} s later")
    assert client.ping()["pid"] == replica_pid
    assert client.call(JSON, GOOD).status == 200
    client.close()
    os.kill(replica_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (code := standby.exit(replica_pid)["code"]) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert code == -signal.SIGKILL  # the standby reports its own replicas' exits
    standby.close()
    control.close()
    os.kill(standby_pid, signal.SIGTERM)
