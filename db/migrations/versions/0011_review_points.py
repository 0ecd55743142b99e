"""review points: a job can wait for an admin's decision (AWAITING_APPROVAL)

AWAITING_APPROVAL is a job in flight: the one-job-per-product index is rebuilt to include it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 09:10:00
"""

from collections.abc import Sequence

import catwalk.db.base
import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "status IN ('GENERATING_IMAGES', 'GENERATING_VIDEO', 'PENDING', 'UPLOADING')"
_NEW = (
    "status IN ('AWAITING_APPROVAL', 'GENERATING_IMAGES', 'GENERATING_VIDEO', 'PENDING', "
    "'UPLOADING')"
)


def _active_index(batch_op: object, where: str) -> None:
    batch_op.create_index(  # type: ignore[attr-defined]
        "uq_video_jobs_active_product",
        ["product_id"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_mode", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("awaiting", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("awaiting_since", catwalk.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("review_round", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("review_quote", sa.Numeric(precision=14, scale=6), nullable=True)
        )
        batch_op.add_column(
            sa.Column("reviewed_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("review", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.drop_index("uq_video_jobs_active_product")
        _active_index(batch_op, _NEW)


def downgrade() -> None:
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_video_jobs_active_product")
        _active_index(batch_op, _OLD)
        for name in (
            "review",
            "reviewed_at",
            "review_quote",
            "review_round",
            "awaiting_since",
            "awaiting",
            "review_mode",
        ):
            batch_op.drop_column(name)
