"""The tables of regserve's state database. Schema changes go through Alembic migrations."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "EndpointRow", "EventRow", "MetricRow", "VersionRow"]


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
    __table_args__ = (Index("ix_events_model_ts", "model_name", "timestamp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    timestamp: Mapped[int] = mapped_column(BigInteger, nullable=False)
    model_name: Mapped[str] = mapped_column(String(256), nullable=False)
    version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)


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
