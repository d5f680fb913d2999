"""Per-minute batch sizes and queue depth beside the traffic figures of ``metric_history``:
batches the workers ran and the requests in them (their mean is one over the other), the
largest batch, and the most requests of the version open at the gateway at once. Nullable:
rows written before them have none.

Revision ID: 0006_metric_batches
Revises: 0005_tracking_owners
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_metric_batches"
down_revision = "0005_tracking_owners"
branch_labels = None
depends_on = None

_COLUMNS = ("batches", "batched_requests", "batch_size_max", "queue_depth_max")


def upgrade() -> None:
    with op.batch_alter_table("metric_history") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_history") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
