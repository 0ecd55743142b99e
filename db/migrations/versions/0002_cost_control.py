"""cost control: job reconciliation mark, alert delivery claims, ledger statistics index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 11:00:00
"""

from collections.abc import Sequence

import catwalk.db.base
import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "cost_reconciled_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True
            )
        )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("delivery_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column(
                "delivery_claimed_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True
            )
        )
    with op.batch_alter_table("cost_ledger", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cost_ledger_stats",
            ["created_at"],
            unique=False,
            postgresql_include=[
                "service",
                "provider",
                "model",
                "resolution",
                "succeeded",
                "amount",
            ],
        )

    op.create_table(
        "cost_ledger_hourly",
        sa.Column("hour", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("resolution", sa.String(length=32), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour",
            "service",
            "provider",
            "model",
            "resolution",
            "succeeded",
            name=op.f("pk_cost_ledger_hourly"),
        ),
    )
    # Databases that already have ledger rows get their rollup now.
    if op.get_bind().dialect.name == "postgresql":
        hour = "date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:
        hour = "strftime('%Y-%m-%d %H:00:00.000000', created_at)"
    op.execute(
        "INSERT INTO cost_ledger_hourly "
        "(hour, service, provider, model, resolution, succeeded, amount, calls) "
        f"SELECT {hour}, service, provider, model, coalesce(resolution, ''), succeeded, "
        "sum(amount), count(*) FROM cost_ledger GROUP BY 1, 2, 3, 4, 5, 6"
    )


def downgrade() -> None:
    op.drop_table("cost_ledger_hourly")
    with op.batch_alter_table("cost_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_cost_ledger_stats")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("delivery_claimed_at")
        batch_op.drop_column("delivery_attempts")
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.drop_column("cost_reconciled_at")
