"""Who created each run and logged model through the hosted registry (their files are
theirs to change), and the creation time of the registered model an endpoint serves (a model
deleted and created again under the same name is not the one that was enabled).

Revision ID: 0005_tracking_owners
Revises: 0004_gateways
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_tracking_owners"
down_revision = "0004_gateways"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracking_owners",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("object_id", sa.String(64), primary_key=True),
        sa.Column("principal_id", sa.Integer, nullable=False, index=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("model_created_at", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("model_created_at")
    op.drop_table("tracking_owners")
