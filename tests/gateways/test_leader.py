"""The leader lock on both stores: two contenders, one wins; the winner goes; the other wins.

Each contender is its own process where it matters (a flock is per open file, an advisory lock
per session, so a second process is the honest test), killed with SIGKILL as a crashed leader.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from regserve.gateways.leader import (
    FileLeaderLock,
    LeaderElector,
    PostgresLeaderLock,
    leader_lock_for,
)
from tests.support.postgres import fresh_database
from tests.support.server import wait_for

_HOLDER = """
import sys, time
from pathlib import Path
from regserve.gateways.leader import leader_lock_for
lock = leader_lock_for(sys.argv[1], Path(sys.argv[2]))
while not lock.try_acquire():
    time.sleep(0.1)
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def pg_uri() -> Iterator[str]:
    yield from fresh_database("regserve_leader")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        yield request.getfixturevalue("pg_uri")


def _holder(uri: str, data_dir: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, uri, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def test_one_of_two_processes_holds_the_lock_until_it_dies(store_uri: str, tmp_path: Path) -> None:
    holder = _holder(store_uri, tmp_path)
    lock = leader_lock_for(store_uri, tmp_path)
    try:
        assert not lock.try_acquire()  # the other process leads
        assert not lock.still_held()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        started = time.monotonic()
        wait_for(lock.try_acquire, 10, "the lock to be free once its holder died")
        assert time.monotonic() - started < 5
        assert lock.still_held()
    finally:
        lock.release()
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_a_released_lock_goes_to_the_next_contender(store_uri: str, tmp_path: Path) -> None:
    first, second = leader_lock_for(store_uri, tmp_path), leader_lock_for(store_uri, tmp_path)
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert not first.still_held()
    assert second.try_acquire()
    assert not first.try_acquire()
    second.release()


def test_a_removed_lock_file_is_a_lost_lock(tmp_path: Path) -> None:
    lock = FileLeaderLock(tmp_path / "state.db.leader.lock")
    assert lock.try_acquire()
    (tmp_path / "state.db.leader.lock").unlink()
    assert not lock.still_held()
    lock.release()


def test_a_broken_connection_is_a_lost_lock_and_the_elector_steps_down(pg_uri: str) -> None:
    """Fencing: the leader's session is terminated; it stops leading at its next check and the
    other contender is elected."""
    calls: list[str] = []

    async def scenario() -> None:
        a_lock, b_lock = PostgresLeaderLock(pg_uri), PostgresLeaderLock(pg_uri)

        def hooks(who: str) -> tuple[object, object]:
            async def elected() -> None:
                calls.append(f"{who} elected")

            async def lost() -> None:
                calls.append(f"{who} lost")

            return elected, lost

        a = LeaderElector(a_lock, *hooks("a"), interval=0.1)  # type: ignore[arg-type]
        b = LeaderElector(b_lock, *hooks("b"), interval=0.1)  # type: ignore[arg-type]
        await a.check()
        await b.check()
        assert (a.leading, b.leading) == (True, False)
        pid = a_lock.backend_pid
        engine = create_engine(pg_uri, isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        engine.dispose()
        await a.check()
        assert not a.leading
        await b.check()
        assert b.leading
        await a.check()
        assert not a.leading
        b_lock.release()

    asyncio.run(scenario())
    assert calls == ["a elected", "a lost", "b elected"]
