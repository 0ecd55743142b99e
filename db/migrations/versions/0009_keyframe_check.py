"""keyframe check: verdicts, scores, issues and regenerations saved on the job

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-02 06:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        # Jobs made before the check existed have no verdicts: an empty object.
        batch_op.add_column(
            sa.Column("quality", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.drop_column("quality")
