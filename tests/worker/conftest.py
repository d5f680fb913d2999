"""Real iris models, real worker processes and a tiny client for the worker's wire protocol."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regserve.worker import wire
from tests.support.models import save_iris_model

STARTUP_TIMEOUT = 90.0


class WireClient:
    """A blocking client for one worker connection; many requests may be in flight."""

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(socket_path))
        except OSError:
            self.sock.close()
            raise
        self._reader = wire.FrameReader()
        self._frames: list[wire.Frame] = []
        self._next_id = 1

    def close(self) -> None:
        self.sock.close()

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def send_request(self, request_id: int, content_type: str | None, body: bytes) -> None:
        self.sock.sendall(wire.encode_request(request_id, content_type, body))

    def send_ping(self, request_id: int) -> None:
        self.sock.sendall(wire.encode_frame(request_id, wire.Kind.PING, b""))

    def receive(self) -> wire.Frame:
        """The next frame from the worker (raises TimeoutError, or EOFError when it hangs up)."""
        while not self._frames:
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("the worker closed the connection")
            self._frames.extend(self._reader.feed(data))
        return self._frames.pop(0)

    def call(self, content_type: str | None, body: bytes) -> wire.Response:
        request_id = self.new_id()
        self.send_request(request_id, content_type, body)
        frame = self.receive()
        assert (frame.request_id, frame.kind) == (request_id, wire.Kind.RESPONSE)
        return wire.decode_response(frame.payload)

    def ping(self) -> dict[str, Any]:
        request_id = self.new_id()
        self.send_ping(request_id)
        frame = self.receive()
        assert (frame.request_id, frame.kind) == (request_id, wire.Kind.PONG)
        pong: dict[str, Any] = json.loads(frame.payload)
        return pong


class WorkerProcess:
    """A ``python -m regserve.worker`` subprocess, its socket and its log file."""

    def __init__(
        self, model_dir: Path, workdir: Path, *, name: str = "iris", args: tuple[str, ...] = ()
    ) -> None:
        self.socket_path = workdir / "w.sock"
        self.log_path = workdir / "worker.log"
        self.command = [
            sys.executable,
            "-m",
            "regserve.worker",
            "--socket",
            str(self.socket_path),
            "--model-path",
            str(model_dir),
            "--name",
            name,
            "--version",
            "1",
            *args,
        ]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            if self.socket_path.exists():
                try:
                    client = WireClient(self.socket_path)
                except OSError:
                    pass
                else:
                    client.ping()
                    client.close()
                    return
            time.sleep(0.05)
        pytest.fail(f"worker not ready after {STARTUP_TIMEOUT} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def iris_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_iris_model(tmp_path_factory.mktemp("models") / "iris")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: Unix socket paths are limited to about 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rsw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def worker(iris_model_dir: Path) -> Iterator[WorkerProcess]:
    """One ready worker serving the iris model, shared by a test module."""
    workdir = Path(tempfile.mkdtemp(prefix="rsw-"))
    process = WorkerProcess(iris_model_dir, workdir)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def client(worker: WorkerProcess) -> Iterator[WireClient]:
    conn = WireClient(worker.socket_path)
    yield conn
    conn.close()
