"""recovery: provider slots catwalk holds, so leaked or lost leases can be reconciled

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-02 06:05:00
"""

from collections.abc import Sequence

import catwalk.db.base
import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slot_holders",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("limit_name", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("lease_id", sa.String(length=64), nullable=True),
        sa.Column("acquired_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("release_pending", sa.Boolean(), nullable=False),
        sa.Column("created_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slot_holders")),
    )
    op.create_index("ix_slot_holders_limit_name", "slot_holders", ["limit_name"])


def downgrade() -> None:
    op.drop_index("ix_slot_holders_limit_name", table_name="slot_holders")
    op.drop_table("slot_holders")
