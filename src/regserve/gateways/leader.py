"""Leadership: exactly one gateway's controller reconciles at a time.

Several ``regserve up`` processes may share one state database. Each runs a
:class:`LeaderElector`, which tries a lock every ``interval`` seconds; the holder leads. The
lock is one that the operating system or the database server releases when its holder dies,
so a killed leader is replaced within about one interval:

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) taken on a dedicated
  connection kept open; the server drops it with the connection.
- SQLite (one machine): an exclusive ``flock`` on a file beside the database.

A leader checks its lock every interval too; when it is gone (the connection broke, the lock
file was removed) it stops leading at once (``on_lost``) and competes again like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import make_url

__all__ = [
    "FileLeaderLock",
    "LeaderElector",
    "LeaderLock",
    "PostgresLeaderLock",
    "leader_lock_for",
    "lock_key",
]

_log = logging.getLogger("regserve.leader")
LOCK_NAME = "regserve.controller"


class LeaderLock(Protocol):
    """A lock its holder's death releases. Methods block; one caller at a time."""

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process now holds it."""

    def still_held(self) -> bool:
        """Whether this process still holds the lock it took."""

    def release(self) -> None:
        """Let the lock go (idempotent)."""


def lock_key(name: str = LOCK_NAME) -> int:
    """The advisory lock key for ``name``: a signed 64-bit integer derived from it."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class PostgresLeaderLock:
    """``pg_try_advisory_lock`` on a dedicated connection that stays open while leading."""

    def __init__(self, store_uri: str, name: str = LOCK_NAME, connect_timeout: int = 5) -> None:
        url = make_url(store_uri).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._key = lock_key(name)
        self._connect_timeout = connect_timeout
        self._conn: Any = None

    def try_acquire(self) -> bool:
        import psycopg

        self.release()
        try:
            # Keepalives: a leader cut off from the server notices within seconds, not hours.
            conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
                application_name="regserve-leader",
            )
        except psycopg.Error as exc:
            _log.warning("cannot reach PostgreSQL to compete for leadership: %s", exc)
            return False
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        except psycopg.Error:
            conn.close()
            return False
        if row is None or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        import psycopg

        if self._conn is None or self._conn.closed:
            return False
        # A session lock lives exactly as long as its session: a live connection holds it.
        try:
            self._conn.execute("SELECT 1").fetchone()
        except psycopg.Error:
            self.release()
            return False
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()  # closing the session releases its advisory locks

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lock's connection (for diagnostics and tests)."""
        return None if self._conn is None else int(self._conn.info.backend_pid)


class FileLeaderLock:
    """An exclusive ``flock`` on ``path``; the kernel drops it when the holder exits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._inode: int | None = None

    def try_acquire(self) -> bool:
        self.release()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd, self._inode = fd, os.fstat(fd).st_ino
        return True

    def still_held(self) -> bool:
        # A lock file removed (or replaced) under us no longer excludes anyone.
        if self._fd is None:
            return False
        try:
            return os.stat(self.path).st_ino == self._inode
        except OSError:
            return False

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def leader_lock_for(store_uri: str, data_dir: Path) -> LeaderLock:
    """The lock for a store: advisory on PostgreSQL, a file beside a SQLite database."""
    url = make_url(store_uri)
    if url.get_backend_name() == "postgresql":
        return PostgresLeaderLock(store_uri)
    database = url.database
    if database and database != ":memory:":
        return FileLeaderLock(Path(f"{Path(database).resolve()}.leader.lock"))
    return FileLeaderLock(data_dir / "leader.lock")


Hook = Callable[[], Awaitable[None]]


class LeaderElector:
    """Competes for ``lock`` every ``interval`` seconds; calls ``on_elected`` when this process
    takes it and ``on_lost`` when it no longer holds it."""

    def __init__(
        self, lock: LeaderLock, on_elected: Hook, on_lost: Hook, interval: float = 1.0
    ) -> None:
        self._lock = lock
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._interval = interval
        self.leading = False

    async def run(self) -> None:
        """Forever: one check per interval."""
        try:
            while True:
                await self.check()
                await asyncio.sleep(self._interval)
        finally:
            if self.leading:
                self.leading = False
                await asyncio.to_thread(self._lock.release)

    async def check(self) -> None:
        if self.leading:
            if not await asyncio.to_thread(self._lock.still_held):
                _log.warning("leadership lost: the controller stops at once")
                await self._step_down()
            return
        if not await asyncio.to_thread(self._lock.try_acquire):
            return
        self.leading = True
        try:
            await self._on_elected()
        except Exception:
            _log.exception("taking over as leader failed; stepping down")
            await self._step_down()

    async def _step_down(self) -> None:
        self.leading = False
        try:
            await self._on_lost()
        finally:
            await asyncio.to_thread(self._lock.release)
