"""The traffic config of each served model's split URL (``/model/{name}/invocations``).

Revision ID: 0006_traffic
Revises: 0005_tracking_owners
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_traffic"
down_revision = "0005_tracking_owners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("traffic", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("traffic")
