"""The warm process as a real process: it imports the libraries once and forks templates that
load their model, write to the log they were given, and fork serving replicas."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regserve.worker import wire
from regserve.worker.exits import EXIT_FORK_UNSAFE
from tests.support.processes import alive

from .test_template import GOOD, JSON, Control, _wait_serving

THREAD_AT_IMPORT = Path(__file__).resolve().parents[1] / "support" / "thread_at_import.py"


class Warm:
    """A ``python -m regserve.worker --warm`` subprocess and its log."""

    def __init__(self, workdir: Path, preload: str, env: dict[str, str] | None = None) -> None:
        self.socket_path = workdir / "warm.sock"
        self.log_path = workdir / "warm.log"
        command = [
            sys.executable,
            "-m",
            "regserve.worker",
            "--warm",
            "--socket",
            str(self.socket_path),
            "--preload",
            preload,
            "--orphan-timeout",
            "10",
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + 90
        while not self.socket_path.exists():
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def warm(short_dir: Path) -> Iterator[Warm]:
    process = Warm(short_dir, "mlflow,mlflow.pyfunc,pandas,numpy,sklearn,mlflow.sklearn")
    process.wait_listening()
    yield process
    process.stop()


def fork_template(control: Control, argv: list[str], log: Path) -> wire.Reply:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        request_id = 7
        frame = wire.encode_template_fork(request_id, {"argv": argv})
        socket.send_fds(control.sock, [frame], [fd])
    finally:
        os.close(fd)
    reader = wire.FrameReader()
    frames: list[wire.Frame] = []
    while not frames:
        frames += reader.feed(control.sock.recv(65536))
    assert (frames[0].request_id, frames[0].kind) == (request_id, wire.Kind.REPLY)
    return wire.decode_reply(frames[0].payload)


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_template_forked_from_the_warm_process_serves(
    warm: Warm, iris_model_dir: Path, short_dir: Path
) -> None:
    assert "warm process ready" in warm.log()
    control = Control(warm.socket_path)
    template_socket, version_log = short_dir / "t.sock", short_dir / "v1.log"
    argv = [
        "--template",
        "--socket",
        str(template_socket),
        "--model-path",
        str(iris_model_dir),
        "--name",
        "iris",
        "--version",
        "1",
        "--orphan-timeout",
        "10",
    ]
    started = time.monotonic()
    answer = fork_template(control, argv, version_log)
    assert answer["ok"], answer
    template_pid = answer["pid"]
    _wait_for(template_socket)
    print(f"\nwarm-forked template ready {time.monotonic() - started:.2f} s after the request")
    assert os.getsid(template_pid) == template_pid  # its own session
    template = Control(template_socket)
    replica_pid = template.fork(short_dir / "r.sock")["pid"]
    client = _wait_serving(short_dir / "r.sock")
    response = client.call(JSON, GOOD)
    assert (response.status, json.loads(response.body)) == (200, {"predictions": [0, 2, 1]})
    client.close()
    # The template's output (and its replica's) went to the log it was given, not the warm's.
    log = version_log.read_text()
    assert f"[pid {template_pid}]: template forked from the warm process pid {warm.proc.pid}" in log
    assert f"[pid {replica_pid}]: forked from template pid {template_pid}" in log
    assert "loading model" not in warm.log()

    os.kill(replica_pid, signal.SIGTERM)
    os.kill(template_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (code := control.exit(template_pid)["code"]) is None:  # the warm process reports it
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert code == -signal.SIGKILL
    template.close()
    control.close()


def test_bad_requests_get_an_error_and_the_warm_process_goes_on(warm: Warm) -> None:
    control = Control(warm.socket_path)
    no_fd = control.ask(lambda rid: wire.encode_template_fork(rid, {"argv": ["--template"]}))
    assert no_fd == {"ok": False, "error": "a TEMPLATE frame carries the log's descriptor"}
    bad = control.ask(lambda rid: wire.encode_frame(rid, wire.Kind.TEMPLATE, b'{"argv": 1}'))
    assert "bad request" in bad["error"]
    fork = control.ask(lambda rid: wire.encode_fork(rid, {"socket": "x", "orphan_timeout": 0}))
    assert fork == {"ok": False, "error": "a warm process does not take FORK"}
    assert control.exit(1) == {"ok": True, "error": "", "code": None}
    control.close()


def test_a_library_that_starts_a_thread_at_import_is_not_forked(short_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(THREAD_AT_IMPORT.parent)}
    process = Warm(short_dir, "mlflow,thread_at_import", env)
    assert process.proc.wait(timeout=120) == EXIT_FORK_UNSAFE, process.log()
    assert "threads were started" in process.log()
    assert "library-poller" in process.log()
    assert not process.socket_path.exists()


def test_the_warm_process_stops_when_orphaned(short_dir: Path) -> None:
    process = Warm(short_dir, "json")
    process.wait_listening()
    Control(process.socket_path).close()
    assert process.proc.wait(timeout=30) == 0
    assert "warm process: no supervisor for 10 s, stopping" in process.log()
    assert not alive(process.proc.pid)


def test_prime_builds_mlflows_package_map_for_the_templates_forked_later() -> None:
    """What every ``load_model`` builds to compare a model's requirements with the environment
    (0.3-1 s) is built once in the warm process, inherited by each forked template."""
    check = (
        "import mlflow.utils.requirements_utils as r\n"
        "from regserve.worker.warm import prime\n"
        "assert r._PACKAGES_TO_MODULES is None\n"
        "prime()\n"
        "assert r._MODULES_TO_PACKAGES and 'sklearn' in r._MODULES_TO_PACKAGES\n"
        "assert r._PACKAGES_TO_MODULES and 'scikit-learn' in r._PACKAGES_TO_MODULES\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
