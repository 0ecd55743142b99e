"""cost control: job reconciliation mark, alert delivery claims, ledger statistics index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cost_reconciled_at", db.base.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("delivery_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("delivery_claimed_at", db.base.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("cost_ledger", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cost_ledger_stats",
            ["created_at"],
            unique=False,
            postgresql_include=["service", "provider", "model", "resolution", "succeeded", "amount"],
        )


def downgrade() -> None:
    with op.batch_alter_table("cost_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_cost_ledger_stats")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("delivery_claimed_at")
        batch_op.drop_column("delivery_attempts")
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.drop_column("cost_reconciled_at")
