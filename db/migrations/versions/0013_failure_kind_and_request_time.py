"""failure kinds and request times

A failed job keeps the class of its failure (catwalk/failures.py): it picks the plain reason
and the actions an admin is offered (retry, new keyframes, start over); rows from before it
read as "unknown" and are offered all three. ``requested_at`` is the admin's last click
(the submission, or the retry): elapsed times count from it, so they never jump back when
the run starts, and a retried job's time is its own.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 14:20:00
"""

from collections.abc import Sequence

import catwalk.db.base
import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure_kind", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("requested_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE video_jobs SET requested_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.drop_column("requested_at")
        batch_op.drop_column("failure_kind")
