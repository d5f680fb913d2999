"""The store's half for several gateways: published routes, the change log and who leads.

A mixin of :class:`regserve.store.StateStore`, like the access half.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from regserve.store.tables import ChangeRow, LeadershipRow, RoutesRow

__all__ = ["ChangeEntry", "GatewayStoreMixin", "LeaderRecord"]

_CHANGE_LOG_KEEP_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class ChangeEntry:
    """A change recorded for the other gateways: what kind, which key, which gateway made it."""

    id: int
    kind: str
    key: str
    origin: str


@dataclass(frozen=True)
class LeaderRecord:
    holder: str
    """The leading gateway's id (``host:port/pid``)."""
    since: int
    """Milliseconds since the epoch."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class GatewayStoreMixin:
    """Rows several gateways share. Methods block."""

    def _session(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    # -- routes ------------------------------------------------------------------------------

    def put_routes(self, model_name: str, routes: str) -> None:
        with self._session() as s:
            row = s.get(RoutesRow, model_name)
            if row is None:
                s.add(RoutesRow(model_name=model_name, routes=routes, updated_at=_now_ms()))
            elif row.routes != routes:
                row.routes, row.updated_at = routes, _now_ms()

    def delete_routes(self, model_name: str) -> None:
        with self._session() as s:
            s.execute(delete(RoutesRow).where(RoutesRow.model_name == model_name))

    def all_routes(self) -> dict[str, str]:
        """Every published model's routes (JSON), by model name."""
        with self._session() as s:
            return {r.model_name: r.routes for r in s.scalars(select(RoutesRow))}

    # -- changes -----------------------------------------------------------------------------

    def add_change(self, kind: str, key: str, origin: str) -> None:
        """Record a change and forget the ones every gateway has long since read."""
        now = _now_ms()
        with self._session() as s:
            s.add(ChangeRow(kind=kind, key=key, origin=origin, created_at=now))
            s.execute(delete(ChangeRow).where(ChangeRow.created_at < now - _CHANGE_LOG_KEEP_MS))

    def last_change_id(self) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.max(ChangeRow.id))) or 0)

    def changes_after(self, change_id: int) -> list[ChangeEntry]:
        with self._session() as s:
            rows = s.scalars(
                select(ChangeRow).where(ChangeRow.id > change_id).order_by(ChangeRow.id)
            )
            return [ChangeEntry(r.id, r.kind, r.key, r.origin) for r in rows]

    def notify(self, channel: str, payload: str) -> None:
        """PostgreSQL: NOTIFY ``channel`` (delivered to every listener once this commits)."""
        with self._session() as s:
            s.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": channel, "payload": payload},
            )

    # -- leadership --------------------------------------------------------------------------

    def set_leader(self, name: str, holder: str) -> None:
        with self._session() as s:
            row = s.get(LeadershipRow, name)
            if row is None:
                s.add(LeadershipRow(name=name, holder=holder, since=_now_ms()))
            else:
                row.holder, row.since = holder, _now_ms()

    def get_leader(self, name: str) -> LeaderRecord | None:
        with self._session() as s:
            row = s.get(LeadershipRow, name)
            return LeaderRecord(row.holder, row.since) if row else None
