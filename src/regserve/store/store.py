"""StateStore: the one place that reads and writes regserve's state database.

Methods are blocking; async callers run them in a thread. Every write commits before it
returns, so a ``kill -9`` right after a call loses nothing that call reported as done.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from regserve.states import EndpointState, VersionState
from regserve.store.access import AccessStoreMixin
from regserve.store.gateways import GatewayStoreMixin
from regserve.store.inference_rows import InferenceStoreMixin
from regserve.store.records import (
    ClusterConfig,
    EndpointRecord,
    EventRecord,
    MetricPoint,
    VersionRecord,
)
from regserve.store.tables import EndpointRow, EventRow, MetricRow, VersionRow
from regserve.traffic import TrafficSplit

__all__ = ["StateStore", "now_ms"]


def now_ms() -> int:
    return int(time.time() * 1000)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across process crashes in WAL mode; only power loss can drop the tail.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class StateStore(AccessStoreMixin, GatewayStoreMixin, InferenceStoreMixin):
    """Endpoints, their versions, events and metric history; principals, tokens and
    permissions come from :class:`AccessStoreMixin`; what several gateways share from
    :class:`GatewayStoreMixin`; captured scoring requests (PostgreSQL's inference tables) from
    :class:`InferenceStoreMixin`."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._engine: Engine = create_engine(uri, future=True, pool_pre_ping=True)
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        # Alembic narrates every step at INFO, its plugins' set-up at import (seven lines on
        # `regserve up`'s console): quiet first, then imported; `--log-level DEBUG` shows them.
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            logging.getLogger("alembic").setLevel(logging.WARNING)
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option(
            "script_location", str(resources.files("regserve.store") / "migrations")
        )
        with self._engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self._engine.dispose()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return str(self._engine.dialect.name)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def connection(self) -> Connection:
        """A raw connection, for contract tests and diagnostics."""
        return self._engine.connect()

    # -- endpoints ---------------------------------------------------------------------------

    def get_endpoint(self, model_name: str) -> EndpointRecord | None:
        with self._session() as s:
            row = s.get(EndpointRow, model_name)
            return _endpoint(row) if row else None

    def list_endpoints(self, enabled_only: bool = True) -> list[EndpointRecord]:
        with self._session() as s:
            query = select(EndpointRow).order_by(EndpointRow.model_name)
            if enabled_only:
                query = query.where(EndpointRow.enabled.is_(True))
            return [_endpoint(r) for r in s.scalars(query)]

    def enable(
        self, model_name: str, default_config: ClusterConfig, model_created_at: int | None = None
    ) -> bool:
        """Mark serving enabled; returns False when it already was. Keeps an earlier config
        of the same registered model: ``model_created_at`` (its creation time) tells a model
        deleted and created again under the name, which starts with ``default_config``."""
        with self._session() as s:
            row = s.get(EndpointRow, model_name)
            if row is not None and row.enabled:
                return False
            default = json.dumps(default_config.to_json())
            if row is None:
                row = EndpointRow(model_name=model_name, desired_config=default)
                s.add(row)
            elif _another_model(row, model_created_at):
                row.desired_config = default
                row.traffic = None
            row.enabled = True
            row.model_created_at = model_created_at
            row.state = EndpointState.PENDING.value
            row.state_message = "Serving cluster is being created."
            row.actual_config = None
            row.updated_at = now_ms()
            return True

    def disable(self, model_name: str) -> bool:
        """Mark serving disabled and forget its versions; returns False when it was not on."""
        with self._session() as s:
            row = s.get(EndpointRow, model_name)
            if row is None or not row.enabled:
                return False
            row.enabled = False
            row.state = EndpointState.PENDING.value
            row.state_message = "Serving disabled."
            row.actual_config = None
            row.updated_at = now_ms()
            s.execute(delete(VersionRow).where(VersionRow.model_name == model_name))
            return True

    def set_model_created_at(self, model_name: str, created_at: int) -> None:
        """Record the served registered model's creation time (endpoints enabled before it
        was recorded learn it on the next registry read)."""
        with self._session() as s:
            row = s.get(EndpointRow, model_name)
            if row is not None:
                row.model_created_at = created_at

    def set_endpoint_state(self, model_name: str, state: EndpointState, message: str) -> None:
        with self._session() as s:
            _put_endpoint_state(s, model_name, state, message)

    def set_desired_config(self, model_name: str, config: ClusterConfig) -> None:
        with self._session() as s:
            row = s.get(EndpointRow, model_name)
            if row is not None:
                row.desired_config = json.dumps(config.to_json())
                row.updated_at = now_ms()

    def set_traffic(self, model_name: str, split: TrafficSplit | None) -> bool:
        """Store the traffic config (None: back to the default); False when the model has
        never been served."""
        with self._session() as s:
            row = s.get(EndpointRow, model_name)
            if row is None:
                return False
            row.traffic = json.dumps(split.to_json()) if split is not None else None
            row.updated_at = now_ms()
            return True

    def set_actual_config(self, model_name: str, config: ClusterConfig | None) -> None:
        with self._session() as s:
            row = s.get(EndpointRow, model_name)
            if row is not None:
                row.actual_config = json.dumps(config.to_json()) if config else None
                row.updated_at = now_ms()

    # -- versions ----------------------------------------------------------------------------

    def list_versions(self, model_name: str) -> list[VersionRecord]:
        with self._session() as s:
            rows = s.scalars(select(VersionRow).where(VersionRow.model_name == model_name))
            return sorted((_version(r) for r in rows), key=lambda v: _version_key(v.version))

    def put_version(
        self, model_name: str, version: str, state: VersionState, message: str, **extra: Any
    ) -> None:
        with self._session() as s:
            row = s.scalars(
                select(VersionRow).where(
                    VersionRow.model_name == model_name, VersionRow.version == version
                )
            ).one_or_none()
            if row is None:
                row = VersionRow(model_name=model_name, version=version, extra="{}")
                s.add(row)
            merged = {**json.loads(row.extra or "{}"), **extra}
            row.state, row.state_message = VersionState(state).value, message
            row.updated_at = now_ms()
            row.extra = json.dumps(merged)

    def reset_versions(self, message: str) -> None:
        """Mark every version PENDING: what a previous process reported no longer holds."""
        with self._session() as s:
            s.execute(
                update(VersionRow).values(
                    state=VersionState.PENDING.value, state_message=message, updated_at=now_ms()
                )
            )

    def delete_version(
        self,
        model_name: str,
        version: str,
        endpoint: tuple[EndpointState, str] | None = None,
    ) -> None:
        """Forget a version; ``endpoint`` (state, message): the endpoint's status without it,
        set in the same transaction."""
        with self._session() as s:
            s.execute(
                delete(VersionRow).where(
                    VersionRow.model_name == model_name, VersionRow.version == version
                )
            )
            if endpoint is not None:
                _put_endpoint_state(s, model_name, *endpoint)

    # -- events ------------------------------------------------------------------------------

    def add_event(
        self,
        model_name: str,
        event_type: str,
        message: str,
        version: str | None = None,
        principal: str | None = None,
    ) -> EventRecord:
        """Record an event; ``principal`` names who caused it (audit). Events that belong to
        no model (tokens) use the model name ``""``, which no registered model can have."""
        record = EventRecord(now_ms(), model_name, event_type, message, version, principal)
        with self._session() as s:
            s.add(
                EventRow(
                    timestamp=record.timestamp,
                    model_name=model_name,
                    version=version,
                    event_type=event_type,
                    message=message,
                    principal=principal,
                )
            )
        return record

    def list_events(
        self, model_name: str, version: str | None = None, limit: int = 500, since: int = 0
    ) -> list[EventRecord]:
        """The newest ``limit`` events of a model (optionally one version) from ``since``
        (ms) on, oldest first."""
        with self._session() as s:
            query = select(EventRow).where(
                EventRow.model_name == model_name, EventRow.timestamp >= since
            )
            if version is not None:
                query = query.where(EventRow.version == version)
            query = query.order_by(EventRow.timestamp.desc(), EventRow.id.desc()).limit(limit)
            rows = list(s.scalars(query))
        return [
            EventRecord(r.timestamp, r.model_name, r.event_type, r.message, r.version, r.principal)
            for r in reversed(rows)
        ]

    # -- metrics -----------------------------------------------------------------------------

    def add_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Store per-minute aggregates: dicts with model_name, version, minute, requests,
        errors, latency_p50_ms, latency_p99_ms and optionally batches, batched_requests,
        batch_size_max, queue_depth_max (None or absent: not known). A row for a minute
        already stored adds to it (counts add up, maxima stay the largest)."""
        if not rows:
            return
        with self._session() as s:
            for data in rows:
                existing = s.scalars(
                    select(MetricRow).where(
                        MetricRow.model_name == data["model_name"],
                        MetricRow.version == data["version"],
                        MetricRow.minute == data["minute"],
                    )
                ).one_or_none()
                if existing is None:
                    s.add(MetricRow(**data))
                    continue
                existing.requests += data["requests"]
                existing.errors += data["errors"]
                existing.latency_p50_ms = data["latency_p50_ms"]
                existing.latency_p99_ms = max(existing.latency_p99_ms, data["latency_p99_ms"])
                _merge_batches(existing, data)

    def metric_history(self, model_name: str, since_ms: int = 0) -> list[MetricPoint]:
        with self._session() as s:
            rows = list(
                s.scalars(
                    select(MetricRow)
                    .where(MetricRow.model_name == model_name, MetricRow.minute >= since_ms)
                    .order_by(MetricRow.minute, MetricRow.version)
                )
            )
        points: list[MetricPoint] = []
        for r in rows:
            points.append(MetricPoint("requests_per_minute", r.requests, r.minute, r.version))
            points.append(MetricPoint("errors_per_minute", r.errors, r.minute, r.version))
            points.append(MetricPoint("latency_p50_ms", r.latency_p50_ms, r.minute, r.version))
            points.append(MetricPoint("latency_p99_ms", r.latency_p99_ms, r.minute, r.version))
            points.extend(_batch_points(r))
        return points


def _merge_batches(existing: MetricRow, data: dict[str, Any]) -> None:
    for name in ("batches", "batched_requests"):
        existing_value, added = getattr(existing, name), data.get(name)
        if added is not None:
            setattr(existing, name, (existing_value or 0) + added)
    for name in ("batch_size_max", "queue_depth_max"):
        existing_value, added = getattr(existing, name), data.get(name)
        if added is not None:
            setattr(existing, name, max(existing_value or 0, added))


def _batch_points(r: MetricRow) -> list[MetricPoint]:
    """A minute's batch size (mean, largest) and queue depth, where it has them."""
    points: list[MetricPoint] = []
    if r.batches and r.batched_requests is not None:
        mean = round(r.batched_requests / r.batches, 3)
        points.append(MetricPoint("batch_size_mean", mean, r.minute, r.version))
    if r.batch_size_max is not None:
        points.append(MetricPoint("batch_size_max", r.batch_size_max, r.minute, r.version))
    if r.queue_depth_max is not None:
        points.append(MetricPoint("queue_depth_max", r.queue_depth_max, r.minute, r.version))
    return points


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def _another_model(row: EndpointRow, model_created_at: int | None) -> bool:
    known = row.model_created_at
    return known is not None and model_created_at is not None and known != model_created_at


def _endpoint(row: EndpointRow) -> EndpointRecord:
    actual = ClusterConfig.from_json(json.loads(row.actual_config)) if row.actual_config else None
    return EndpointRecord(
        model_name=row.model_name,
        enabled=row.enabled,
        state=EndpointState(row.state),
        state_message=row.state_message,
        desired_config=ClusterConfig.from_json(json.loads(row.desired_config)),
        actual_config=actual,
        updated_at=row.updated_at,
        model_created_at=row.model_created_at,
        traffic=TrafficSplit.from_json(json.loads(row.traffic)) if row.traffic else None,
    )


def _version(row: VersionRow) -> VersionRecord:
    return VersionRecord(
        model_name=row.model_name,
        version=row.version,
        state=VersionState(row.state),
        state_message=row.state_message,
        updated_at=row.updated_at,
        extra=json.loads(row.extra or "{}"),
    )


def _put_endpoint_state(s: Session, model_name: str, state: EndpointState, message: str) -> None:
    """Set an endpoint's state and message in session ``s`` (nothing when unchanged or gone)."""
    row = s.get(EndpointRow, model_name)
    value = EndpointState(state).value
    if row is None or (row.state == value and row.state_message == message):
        return
    row.state, row.state_message, row.updated_at = value, message, now_ms()
