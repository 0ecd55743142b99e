"""dashboard sessions: the signed cookie's server side, so sign-out revokes it

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 14:20:00
"""

from collections.abc import Sequence

import catwalk.db.base
import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("admin", sa.String(length=320), nullable=False),
        sa.Column("created_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("handoff_hash", sa.String(length=64), nullable=True),
        sa.Column("handoff_until", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
        sa.UniqueConstraint("handoff_hash", name=op.f("uq_dashboard_sessions_handoff_hash")),
    )
    op.create_index(op.f("ix_dashboard_sessions_expires_at"), "dashboard_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dashboard_sessions_expires_at"), table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
