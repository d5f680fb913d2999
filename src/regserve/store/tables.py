"""The tables of regserve's state database. Schema changes go through Alembic migrations."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

_ROW_ID = BigInteger().with_variant(Integer, "sqlite")
"""A 64-bit key (SQLite numbers only an INTEGER key by itself)."""

__all__ = [
    "Base",
    "ChangeRow",
    "EndpointRow",
    "EventRow",
    "GrantRow",
    "InferenceRow",
    "LeadershipRow",
    "MetricRow",
    "PrincipalRow",
    "RoutesRow",
    "TokenRow",
    "TrackingOwnerRow",
    "VersionRow",
]


class Base(DeclarativeBase):
    pass


class EndpointRow(Base):
    __tablename__ = "endpoints"

    model_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    state: Mapped[str] = mapped_column(String(64), nullable=False)
    state_message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    desired_config: Mapped[str] = mapped_column(Text, nullable=False)
    actual_config: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    model_created_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The served registered model's creation time (ms): another model of the same name,
    created after a deletion, has another one."""
    traffic: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The traffic config of ``/model/{name}/invocations`` (JSON); None: the default."""


class VersionRow(Base):
    __tablename__ = "endpoint_versions"
    __table_args__ = (UniqueConstraint("model_name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    version: Mapped[str] = mapped_column(String(32), nullable=False)
    state: Mapped[str] = mapped_column(String(64), nullable=False)
    state_message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    extra: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_model_ts", "model_name", "timestamp"),
        Index("ix_events_principal_ts", "principal", "timestamp"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    timestamp: Mapped[int] = mapped_column(BigInteger, nullable=False)
    model_name: Mapped[str] = mapped_column(String(256), nullable=False)
    version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    principal: Mapped[str | None] = mapped_column(String(256), nullable=True)


class MetricRow(Base):
    """Per-minute aggregates of scoring traffic for one model version."""

    __tablename__ = "metric_history"
    __table_args__ = (
        UniqueConstraint("model_name", "version", "minute"),
        Index("ix_metric_model_minute", "model_name", "minute"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256), nullable=False)
    version: Mapped[str] = mapped_column(String(32), nullable=False)
    minute: Mapped[int] = mapped_column(BigInteger, nullable=False)
    requests: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    errors: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    latency_p50_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    latency_p99_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    # Null in rows that saw no batch, or were written before these columns existed.
    batches: Mapped[int | None] = mapped_column(Integer, nullable=True)
    batched_requests: Mapped[int | None] = mapped_column(Integer, nullable=True)
    batch_size_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    queue_depth_max: Mapped[int | None] = mapped_column(Integer, nullable=True)


class PrincipalRow(Base):
    """Users and service principals."""

    __tablename__ = "principals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    application_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    allow_cluster_create: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class TokenRow(Base):
    """Tokens by the SHA-256 of their value; the value itself is never stored."""

    __tablename__ = "tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("principals.id"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    comment: Mapped[str] = mapped_column(Text, nullable=False, default="")
    creation_time: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expiry_time: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_by: Mapped[str] = mapped_column(String(256), nullable=False)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class GrantRow(Base):
    """One access control entry on a registered model."""

    __tablename__ = "model_permissions"
    __table_args__ = (UniqueConstraint("model_name", "grantee_type", "grantee"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    grantee_type: Mapped[str] = mapped_column(String(16), nullable=False)
    grantee: Mapped[str] = mapped_column(String(256), nullable=False)
    level: Mapped[str] = mapped_column(String(64), nullable=False)


class TrackingOwnerRow(Base):
    """The principal who created a run or logged model through the hosted registry."""

    __tablename__ = "tracking_owners"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    """``run`` or ``logged_model``."""
    object_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class RoutesRow(Base):
    """One served model's routing table as the leading gateway last published it (JSON)."""

    __tablename__ = "served_routes"

    model_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    routes: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ChangeRow(Base):
    """A change other gateways must apply (SQLite only; PostgreSQL sends NOTIFY instead)."""

    __tablename__ = "change_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    key: Mapped[str] = mapped_column(String(256), nullable=False)
    origin: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class LeadershipRow(Base):
    """Which gateway holds a leadership (the lock itself is an advisory or file lock)."""

    __tablename__ = "leadership"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256), nullable=False)
    since: Mapped[int] = mapped_column(BigInteger, nullable=False)


class InferenceRow(Base):
    """A captured scoring request (an inference table row) when the store is PostgreSQL; the
    columns are those of the Parquet files (:data:`regserve.inference.rows.SCHEMA`)."""

    __tablename__ = "inference_rows"
    __table_args__ = (
        Index("ix_inference_rows_model_ts", "model", "timestamp"),
        Index("ix_inference_rows_ts", "timestamp"),
    )

    id: Mapped[int] = mapped_column(_ROW_ID, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)
    timestamp: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    version: Mapped[str] = mapped_column(Text, nullable=False)
    ref: Mapped[str] = mapped_column(Text, nullable=False)
    route: Mapped[str | None] = mapped_column(Text, nullable=True)
    shadow: Mapped[bool] = mapped_column(Boolean, nullable=False)
    caller: Mapped[str] = mapped_column(Text, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    content_type: Mapped[str | None] = mapped_column(Text, nullable=True)
    request: Mapped[str] = mapped_column(Text, nullable=False)
    request_truncated: Mapped[bool] = mapped_column(Boolean, nullable=False)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_truncated: Mapped[bool] = mapped_column(Boolean, nullable=False)
