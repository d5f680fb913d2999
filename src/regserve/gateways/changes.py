"""Telling the other gateways on the same database what changed, at once.

Each gateway keeps things in memory that another gateway can change: cached tokens and model
permissions, the routing table (the leader writes it), and the leader's controller, which must
hear of an enable, disable or config change made through a follower. A gateway that changes
one of them publishes a :class:`Change`; every other gateway receives it and drops or reloads
what it holds:

- PostgreSQL: ``NOTIFY regserve_changes`` (delivered when the change commits), received on a
  dedicated ``LISTEN`` connection. After a reconnect everything is reloaded (``ALL``): a
  notification sent meanwhile is lost.
- SQLite (gateways on one machine): a row in ``change_log``, polled every ``poll`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from regserve.store import StateStore

__all__ = [
    "ALL",
    "CHANNEL",
    "CONFIG",
    "GRANTS",
    "ROUTES",
    "TOKENS",
    "Change",
    "ChangeFeed",
    "PostgresChangeFeed",
    "SqliteChangeFeed",
    "change_feed_for",
]

_log = logging.getLogger("regserve.changes")

TOKENS = "tokens"
"""Tokens or principals changed: drop every cached token."""
GRANTS = "grants"
"""A model's permissions changed (key: the model; empty: every model)."""
CONFIG = "config"
"""Serving was enabled, disabled or reconfigured (key: the model): the leader reconciles."""
ROUTES = "routes"
"""The leader published a model's routes (key: the model): followers reload them."""
ALL = "all"
"""Anything may have changed (a missed notification): reload everything."""
CHANNEL = "regserve_changes"


@dataclass(frozen=True)
class Change:
    kind: str
    key: str = ""


Apply = Callable[[Change], None]


class ChangeFeed:
    """Publishes this gateway's changes and delivers the others' (to ``run``'s ``apply``)."""

    def __init__(self, store: StateStore, origin: str) -> None:
        self._store = store
        self.origin = origin
        self._sending: set[asyncio.Task[None]] = set()

    def publish(self, kind: str, key: str = "") -> None:
        """Send a change from the event loop without waiting (the write runs in a thread)."""
        task = asyncio.get_running_loop().create_task(self._send_async(kind, key))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_async(self, kind: str, key: str) -> None:
        try:
            await asyncio.to_thread(self.send, kind, key)
        except Exception:  # the others then see it within their cache TTL / poll
            _log.exception("could not publish change %s %r", kind, key)

    def send(self, kind: str, key: str = "") -> None:
        """Publish a change (blocking)."""
        raise NotImplementedError

    async def run(self, apply: Apply) -> None:
        """Deliver the other gateways' changes to ``apply`` (in the event loop), forever."""
        raise NotImplementedError


class SqliteChangeFeed(ChangeFeed):
    """Changes as rows of ``change_log``, polled."""

    def __init__(self, store: StateStore, origin: str, poll: float = 0.5) -> None:
        super().__init__(store, origin)
        self._poll = poll

    def send(self, kind: str, key: str = "") -> None:
        self._store.add_change(kind, key, self.origin)

    async def run(self, apply: Apply) -> None:
        last = await asyncio.to_thread(self._store.last_change_id)
        while True:
            await asyncio.sleep(self._poll)
            try:
                entries = await asyncio.to_thread(self._store.changes_after, last)
            except Exception:  # a busy database: next time
                _log.warning("could not read the change log", exc_info=True)
                continue
            for entry in entries:
                last = entry.id
                if entry.origin != self.origin:
                    apply(Change(entry.kind, entry.key))


class PostgresChangeFeed(ChangeFeed):
    """Changes as ``NOTIFY`` on :data:`CHANNEL`, heard on a ``LISTEN`` connection of a thread
    of its own (it blocks on the socket; the event loop's thread pool stays free)."""

    def __init__(self, store: StateStore, origin: str, retry: float = 1.0) -> None:
        super().__init__(store, origin)
        self._conninfo = make_url(store.uri).set(drivername="postgresql")
        self._retry = retry

    def send(self, kind: str, key: str = "") -> None:
        payload = json.dumps({"kind": kind, "key": key, "origin": self.origin})
        self._store.notify(CHANNEL, payload)

    async def run(self, apply: Apply) -> None:
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def deliver(payload: str) -> None:
            try:
                data = json.loads(payload)
            except ValueError:
                return
            if data.get("origin") != self.origin:
                apply(Change(str(data.get("kind", ALL)), str(data.get("key", ""))))

        def on_connected() -> None:
            apply(Change(ALL))

        thread = threading.Thread(
            target=self._listen,
            args=(loop, deliver, on_connected, stop),
            name="regserve-listen",
            daemon=True,
        )
        thread.start()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            stop.set()

    def _listen(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[str], None],
        on_connected: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        import psycopg

        conninfo = self._conninfo.render_as_string(hide_password=False)
        first = True
        while not stop.is_set():
            try:
                with psycopg.connect(
                    conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=2,
                    application_name="regserve-listen",
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not first:  # notifications sent while we were away are lost
                        loop.call_soon_threadsafe(on_connected)
                    first = False
                    self._pump(conn, loop, deliver, stop)
            except psycopg.Error as exc:
                _log.warning("change notifications interrupted (%s); reconnecting", exc)
                first = False
                stop.wait(self._retry)
            except RuntimeError:  # the event loop closed: the process is stopping
                return

    @staticmethod
    def _pump(
        conn: Any,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[str], None],
        stop: threading.Event,
    ) -> None:
        while not stop.is_set():
            for notify in conn.notifies(timeout=0.5):
                loop.call_soon_threadsafe(deliver, notify.payload)


def change_feed_for(store: StateStore, origin: str) -> ChangeFeed:
    if store.dialect == "postgresql":
        return PostgresChangeFeed(store, origin)
    return SqliteChangeFeed(store, origin)
