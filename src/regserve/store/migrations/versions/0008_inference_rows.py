"""The inference tables' rows when the store is PostgreSQL (``inference_rows``; with SQLite the
rows go to Parquet files and this table stays empty). The columns are the Parquet files'.

Revision ID: 0008_inference_rows
Revises: 0007_traffic
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_inference_rows"
down_revision = "0007_traffic"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inference_rows",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("ref", sa.Text, nullable=False),
        sa.Column("route", sa.Text, nullable=True),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("content_type", sa.Text, nullable=True),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("request_truncated", sa.Boolean, nullable=False),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("response_truncated", sa.Boolean, nullable=False),
    )
    op.create_index("ix_inference_rows_model_ts", "inference_rows", ["model", "timestamp"])
    op.create_index("ix_inference_rows_ts", "inference_rows", ["timestamp"])


def downgrade() -> None:
    op.drop_index("ix_inference_rows_ts", "inference_rows")
    op.drop_index("ix_inference_rows_model_ts", "inference_rows")
    op.drop_table("inference_rows")
