"""Endpoints, endpoint versions, events and metric history.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("model_name", sa.String(256), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("state_message", sa.Text, nullable=False),
        sa.Column("desired_config", sa.Text, nullable=False),
        sa.Column("actual_config", sa.Text, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "endpoint_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False, index=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("state_message", sa.Text, nullable=False),
        sa.Column("extra", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("model_name", "version"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_events_model_ts", "events", ["model_name", "timestamp"])
    op.create_table(
        "metric_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("minute", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("latency_p50_ms", sa.Float, nullable=False),
        sa.Column("latency_p99_ms", sa.Float, nullable=False),
        sa.UniqueConstraint("model_name", "version", "minute"),
    )
    op.create_index("ix_metric_model_minute", "metric_history", ["model_name", "minute"])


def downgrade() -> None:
    op.drop_table("metric_history")
    op.drop_table("events")
    op.drop_table("endpoint_versions")
    op.drop_table("endpoints")
