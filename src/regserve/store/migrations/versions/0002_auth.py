"""Principals, tokens (hashes only), model permissions, and who caused an event.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(256), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("application_id", sa.String(64), nullable=True, unique=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("allow_cluster_create", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("token_id", sa.String(64), primary_key=True),
        sa.Column(
            "principal_id", sa.Integer, sa.ForeignKey("principals.id"), nullable=False, index=True
        ),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("expiry_time", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "model_permissions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False, index=True),
        sa.Column("grantee_type", sa.String(16), nullable=False),
        sa.Column("grantee", sa.String(256), nullable=False),
        sa.Column("level", sa.String(64), nullable=False),
        sa.UniqueConstraint("model_name", "grantee_type", "grantee"),
    )
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("principal", sa.String(256), nullable=True))
    op.create_index("ix_events_principal_ts", "events", ["principal", "timestamp"])


def downgrade() -> None:
    op.drop_index("ix_events_principal_ts", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("principal")
    op.drop_table("model_permissions")
    op.drop_table("tokens")
    op.drop_table("principals")
