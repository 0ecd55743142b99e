"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 10:38:54.547600
"""

from collections.abc import Sequence

import catwalk.db.base
import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivery_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_alerts_dedupe_key")),
    )
    op.create_table(
        "pending_deletions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("done_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_deletions")),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("video_key", sa.String(length=1024), nullable=True),
        sa.Column("poster_key", sa.String(length=1024), nullable=True),
        sa.Column("video_url", sa.Text(), nullable=True),
        sa.Column("video_job_id", sa.String(length=64), nullable=True),
        sa.Column("video_updated_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    op.create_table(
        "usage_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("generations", sa.Integer(), nullable=False),
        sa.Column("reserved_cost", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_usage_days")),
    )
    op.create_table(
        "video_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=255), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING",
                "GENERATING_IMAGES",
                "GENERATING_VIDEO",
                "UPLOADING",
                "COMPLETED",
                "FAILED",
                "CANCELLED",
                name="jobstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("current_step", sa.String(length=255), nullable=False),
        sa.Column("wait_reason", sa.String(length=255), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("identity_seed", sa.Integer(), nullable=False),
        sa.Column("image_keys", sa.JSON(), nullable=False),
        sa.Column("image_request_ids", sa.JSON(), nullable=False),
        sa.Column("image_provider", sa.String(length=64), nullable=True),
        sa.Column("video_provider", sa.String(length=64), nullable=True),
        sa.Column("video_request_id", sa.String(length=255), nullable=True),
        sa.Column("video_request_urls", sa.JSON(), nullable=False),
        sa.Column("provider_video_url", sa.Text(), nullable=True),
        sa.Column("queue_position", sa.Integer(), nullable=True),
        sa.Column("video_key", sa.String(length=1024), nullable=True),
        sa.Column("poster_key", sa.String(length=1024), nullable=True),
        sa.Column("video_duration_seconds", sa.Double(), nullable=True),
        sa.Column("nano_banana_cost", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("pika_labs_cost", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("total_cost", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("estimated_cost", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("usage_day", sa.Date(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_video_jobs_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_jobs")),
    )
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_video_jobs_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_video_jobs_flow_run_id"), ["flow_run_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_video_jobs_product_id"), ["product_id"], unique=False)
        batch_op.create_index(
            "ix_video_jobs_status_created", ["status", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_video_jobs_usage_day"), ["usage_day"], unique=False)
        batch_op.create_index(
            "uq_video_jobs_active_product",
            ["product_id"],
            unique=True,
            sqlite_where=sa.text(
                "status IN ('GENERATING_IMAGES', 'GENERATING_VIDEO', 'PENDING', 'UPLOADING')"
            ),
            postgresql_where=sa.text(
                "status IN ('GENERATING_IMAGES', 'GENERATING_VIDEO', 'PENDING', 'UPLOADING')"
            ),
        )

    op.create_table(
        "cost_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("units", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_date", sa.Date(), nullable=True),
        sa.Column("provider_request_id", sa.String(length=255), nullable=True),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["video_jobs.id"],
            name=op.f("fk_cost_ledger_job_id_video_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_ledger")),
    )
    with op.batch_alter_table("cost_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_cost_ledger_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_cost_ledger_job_id", ["job_id"], unique=False)

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("at", catwalk.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["video_jobs.id"],
            name=op.f("fk_job_events_job_id_video_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_events_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_events_job_id"))

    op.drop_table("job_events")
    with op.batch_alter_table("cost_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_cost_ledger_job_id")
        batch_op.drop_index("ix_cost_ledger_created_at")

    op.drop_table("cost_ledger")
    with op.batch_alter_table("video_jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_video_jobs_active_product",
            sqlite_where=sa.text(
                "status IN ('GENERATING_IMAGES', 'GENERATING_VIDEO', 'PENDING', 'UPLOADING')"
            ),
            postgresql_where=sa.text(
                "status IN ('GENERATING_IMAGES', 'GENERATING_VIDEO', 'PENDING', 'UPLOADING')"
            ),
        )
        batch_op.drop_index(batch_op.f("ix_video_jobs_usage_day"))
        batch_op.drop_index("ix_video_jobs_status_created")
        batch_op.drop_index(batch_op.f("ix_video_jobs_product_id"))
        batch_op.drop_index(batch_op.f("ix_video_jobs_flow_run_id"))
        batch_op.drop_index("ix_video_jobs_created_at")

    op.drop_table("video_jobs")
    op.drop_table("usage_days")
    op.drop_table("products")
    op.drop_table("pending_deletions")
    op.drop_table("alerts")
