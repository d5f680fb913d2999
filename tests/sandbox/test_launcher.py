"""The launcher puts a process in its sandbox before it runs: checked on real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench.servers import open_way_to

from regserve.sandbox import launcher
from regserve.worker.exits import EXIT_SANDBOX_FAILED
from tests.conftest import require_service

UID = 2_000_000_100
"""A uid nothing else on this machine runs as."""
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        require_service("the launcher changes user: it needs root")


def _launch(
    *options: str, command: list[str], **kwargs: object
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-I", "-S", launcher.__file__, *options, "--", *command]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
        **kwargs,
    )  # type: ignore[call-overload]


def test_the_worker_runs_as_the_user_with_no_group_and_no_way_back(tmp_path: Path) -> None:
    open_way_to(tmp_path / "x")  # pytest made its directories 0700
    script = (
        "import os; print(os.getresuid(), os.getresgid(), os.getgroups(), os.getcwd());"
        "print([l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0]);"
        "os.setuid(0)"
    )
    done = _launch(
        "--uid",
        str(UID),
        "--gid",
        str(UID),
        "--home",
        str(tmp_path),
        command=[SYSTEM_PYTHON, "-c", script],
    )
    first, second = done.stdout.splitlines()[:2]
    assert first == f"({UID}, {UID}, {UID}) ({UID}, {UID}, {UID}) [] {tmp_path}"
    assert second.split() == ["NoNewPrivs:", "1"]
    assert "PermissionError" in done.stderr  # setuid(0) is refused
    assert done.returncode == 1


def test_the_process_cap_holds_for_the_user() -> None:
    script = "import resource; print(resource.getrlimit(resource.RLIMIT_NPROC))"
    done = _launch("--uid", str(UID), "--max-pids", "20", command=[SYSTEM_PYTHON, "-c", script])
    assert done.stdout.strip() == "(20, 20)"


def test_inherited_descriptors_are_closed() -> None:
    read, write = os.pipe()
    os.set_inheritable(write, True)
    try:
        done = _launch("--uid", str(UID), command=["/bin/ls", "/proc/self/fd"], pass_fds=(write,))
    finally:
        os.close(read)
        os.close(write)
    assert str(write) not in done.stdout.split()
    assert set(done.stdout.split()) <= {"0", "1", "2", "3"}  # 3: ls's own directory


def test_no_network_leaves_only_loopback() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        script = (
            "import socket; print(sorted(n for _, n in socket.if_nameindex()));"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=3)"
        )
        done = _launch(
            "--uid", str(UID), "--network", "none", command=[SYSTEM_PYTHON, "-c", script]
        )
        host = _launch("--uid", str(UID), command=[SYSTEM_PYTHON, "-c", script])
    assert done.stdout.strip() == "['lo']"
    assert "ConnectionRefusedError" in done.stderr  # this host's port is not there
    assert host.returncode == 0, host.stderr  # the same, with the host's network, connects


def test_kill_all_stops_every_process_of_the_user() -> None:
    sleepers = [
        subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                launcher.__file__,
                "--uid",
                str(UID),
                "--",
                "/bin/sleep",
                "60",
            ]
        )
        for _ in range(3)
    ]
    time.sleep(0.5)
    assert all(p.poll() is None for p in sleepers)
    done = _launch("--uid", str(UID), command=["kill-all"])
    assert done.returncode == 0, done.stderr
    assert [p.wait(timeout=10) for p in sleepers] == [-9, -9, -9]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--uid", "x", "--", "/bin/true"], "invalid literal"),
        (["--uid", str(UID), "/bin/true"], "no command after --"),
        (["--shell", "1", "--", "/bin/true"], "unknown options"),
        (["--uid", str(UID), "--home", "/nonexistent", "--", "/bin/true"], "No such file"),
        (["--uid", str(UID), "--", "/nonexistent/python"], "No such file"),
    ],
)
def test_a_sandbox_that_cannot_be_made_runs_nothing(options: list[str], said: str) -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-S", launcher.__file__, *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_SANDBOX_FAILED == launcher.EXIT_SANDBOX_FAILED
    assert "regserve sandbox: the worker could not be started" in done.stderr
    assert said in done.stderr
