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

from regserve.worker.exits import EXIT_FORK_UNSAFE
from tests.conformance_cases import SPLIT
from tests.support.models import save_threaded_model
from tests.support.processes import alive

from .conftest import WireClient, WorkerProcess

JSON = "application/json"
GOOD = json.dumps({"dataframe_split": SPLIT}).encode()


class Control:
    """The supervisor's side of the template's control socket (one JSON line each way)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.file.write(json.dumps(request).encode() + b"\n")
        self.file.flush()
        answer: dict[str, Any] = json.loads(self.file.readline())
        return answer

    def close(self) -> None:
        self.file.close()
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
    replica_socket, replica_log = short_dir / "r1.sock", short_dir / "r1.log"
    started = time.monotonic()
    answer = control.ask({"op": "fork", "socket": str(replica_socket), "log": str(replica_log),
                          "orphan_timeout": 0})  # fmt: skip
    pid = answer["pid"]
    client = _wait_serving(replica_socket)
    print(f"\nforked replica serving {time.monotonic() - started:.3f} s after the request")
    assert client.ping()["pid"] == pid
    response = client.call(JSON, GOOD)
    assert (response.status, json.loads(response.body)) == (200, {"predictions": [0, 2, 1]})
    assert client.call(JSON, b"{broken").status == 400  # a bad request does not kill it
    client.close()
    assert os.getsid(pid) == pid  # its own session: a signal to the template's group misses it
    assert f"forked from template pid {template.proc.pid}" in replica_log.read_text()

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (code := control.ask({"op": "exit", "pid": pid})["code"]) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert code == -signal.SIGKILL
    assert control.ask({"op": "exit", "pid": 1})["code"] is None  # not one of its replicas
    control.close()


def test_bad_control_requests_get_an_error_and_the_template_goes_on(
    template: WorkerProcess, short_dir: Path
) -> None:
    control = Control(template.socket_path)
    assert "unknown op" in control.ask({"op": "serve"})["error"]
    assert "bad request" in control.ask({"op": "fork"})["error"]
    control.file.write(b"not json\n")
    control.file.flush()
    assert "bad request" in json.loads(control.file.readline())["error"]
    answer = control.ask({"op": "fork", "socket": str(short_dir / "ok.sock"),
                          "log": str(short_dir / "ok.log"), "orphan_timeout": 0})  # fmt: skip
    _wait_serving(short_dir / "ok.sock").close()
    os.kill(answer["pid"], signal.SIGTERM)
    control.close()


def test_replicas_outlive_the_template_which_stops_when_orphaned(
    template: WorkerProcess, short_dir: Path
) -> None:
    control = Control(template.socket_path)
    pid = control.ask({"op": "fork", "socket": str(short_dir / "r.sock"),
                       "log": str(short_dir / "r.log"), "orphan_timeout": 0})["pid"]  # fmt: skip
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
