"""The traffic config of each served model's split URL (``/model/{name}/invocations``).

Revision ID: 0007_traffic
Revises: 0006_metric_batches
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_traffic"
down_revision = "0006_metric_batches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("traffic", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("traffic")
