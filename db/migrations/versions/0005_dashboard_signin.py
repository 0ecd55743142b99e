"""dashboard: sign-in throttle and latest-job-per-product index

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-26 11:05:00
"""

from collections.abc import Sequence

import catwalk.db.base
import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    throttle = op.create_table(
        "signin_throttle",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_signin_throttle")),
    )
    # The one global row exists from the start, so counting a failure is a single UPDATE.
    op.bulk_insert(
        throttle,
        [
            {
                "scope": "global",
                "failures": 0,
                "locked_until": None,
                "updated_at": catwalk.db.base.utcnow(),
            }
        ],
    )
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_video_jobs_product_created", ["product_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_video_jobs_product_created")
    op.drop_table("signin_throttle")
