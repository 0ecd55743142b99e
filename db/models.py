"""catwalk's tables: products, video jobs, their step events, the cost ledger, alerts,
daily usage (limit reservations) and pending deletions of replaced files.

Storage *keys* are kept, never expiring URLs: a URL is made from a key when one is shown.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from catwalk.db.base import Base, IdStr, Money, Timestamp, new_id, utcnow
from sqlalchemy import Date, Enum, ForeignKey, Index, Integer, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from catwalk.domain import ACTIVE_STATUSES, JobStatus
from catwalk.scrub import scrub

# The predicate of the one-active-job-per-product index; an upsert names it to target it.
ACTIVE_JOB_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES)))


class Product(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    # Paths or URLs of the shop's product photos, in order; the first one is used.
    images: Mapped[list[str]] = mapped_column(default=list)
    video_key: Mapped[str | None] = mapped_column(String(1024))
    poster_key: Mapped[str | None] = mapped_column(String(1024))
    # The public URL written at publish time, for systems that read the column directly.
    video_url: Mapped[str | None] = mapped_column(Text)
    video_job_id: Mapped[str | None] = mapped_column(String(64))
    video_updated_at: Mapped[dt.datetime | None]
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)
    updated_at: Mapped[Timestamp] = mapped_column(default=utcnow, onupdate=utcnow)

    jobs: Mapped[list[VideoJob]] = relationship(
        back_populates="product", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Product(id={self.id!r}, name={self.name!r}, video_key={self.video_key!r})"


class VideoJob(Base):
    """One video generation for one product (the original VideoGenerationJob, and more)."""

    __tablename__ = "video_jobs"
    __table_args__ = (
        # One job per product at a time: a double click cannot start (and pay for) two.
        Index(
            "uq_video_jobs_active_product",
            "product_id",
            unique=True,
            sqlite_where=text(ACTIVE_JOB_SQL),
            postgresql_where=text(ACTIVE_JOB_SQL),
        ),
        Index("ix_video_jobs_status_created", "status", "created_at"),
        Index("ix_video_jobs_created_at", "created_at"),
        # The dashboard's "latest job of each product" (filters: failed, in progress).
        Index("ix_video_jobs_product_created", "product_id", "created_at"),
    )

    id: Mapped[IdStr]
    product_id: Mapped[str] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=32, validate_strings=True),
        default=JobStatus.PENDING,
    )
    progress: Mapped[int] = mapped_column(Integer, default=0)
    current_step: Mapped[str] = mapped_column(String(255), default="queued")
    # Why it waits, shown plainly: "waiting for a Pika slot", "queued at provider (position 3)".
    wait_reason: Mapped[str | None] = mapped_column(String(255))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Deterministic per job so both keyframes show the same model.
    identity_seed: Mapped[int] = mapped_column(Integer, default=0)

    # Keys of the keyframes in storage, by pose (the contract's nanoBananaImageUrls).
    image_keys: Mapped[dict[str, Any]] = mapped_column(default=dict)
    image_request_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    image_provider: Mapped[str | None] = mapped_column(String(64))
    video_provider: Mapped[str | None] = mapped_column(String(64))

    # The video provider's request: saved the moment the submit answers, so a restarted
    # worker re-attaches instead of paying again. URLs are the ones the provider returned.
    video_request_id: Mapped[str | None] = mapped_column(String(255))
    video_request_urls: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Where that request stands: open (accepted, not yet collected), collected, failed,
    # cancelled, billed (fal finished it after the job ended) or gone (fal forgot it). An
    # ended job must not keep an open one: that is a video paid for and thrown away.
    video_request_state: Mapped[str | None] = mapped_column(String(16))
    provider_video_url: Mapped[str | None] = mapped_column(Text)  # pikaLabsVideoUrl
    queue_position: Mapped[int | None] = mapped_column(Integer)

    video_key: Mapped[str | None] = mapped_column(String(1024))  # finalVideoUrl's key
    poster_key: Mapped[str | None] = mapped_column(String(1024))
    video_duration_seconds: Mapped[float | None]

    nano_banana_cost: Mapped[Money] = mapped_column(default=Decimal(0))
    pika_labs_cost: Mapped[Money] = mapped_column(default=Decimal(0))
    total_cost: Mapped[Money] = mapped_column(default=Decimal(0))
    estimated_cost: Mapped[Money] = mapped_column(default=Decimal(0))
    # The day (in the limits' time zone) whose generation limit this job counts against.
    usage_day: Mapped[dt.date | None] = mapped_column(Date, index=True)
    # Set once the day's reservation has been corrected from estimate to actual cost.
    cost_reconciled_at: Mapped[dt.datetime | None]

    # The keyframe check (tasks/quality.py): mode, judge, every verdict with its scores and
    # issues, regenerations and what the check and the regenerations cost.
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # Review points (catwalk/review.py): the job's mode, fixed when it starts; the point it
    # waits at and since when; the round (a regenerated frame asks again under a new one),
    # what approving would still cost; the points approved and every decision taken.
    review_mode: Mapped[str | None] = mapped_column(String(16))
    awaiting: Mapped[str | None] = mapped_column(String(16))
    awaiting_since: Mapped[dt.datetime | None]
    review_round: Mapped[int] = mapped_column(Integer, default=0)
    review_quote: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    # The last decision: a resumed job's time limits count from it, not from its start.
    reviewed_at: Mapped[dt.datetime | None]
    review: Mapped[dict[str, Any]] = mapped_column(default=dict)

    error_message: Mapped[str | None] = mapped_column(Text)
    # The failure's class (catwalk/failures.FailureKind): picks the reason and the actions.
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)

    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)
    updated_at: Mapped[Timestamp] = mapped_column(default=utcnow, onupdate=utcnow)
    # The admin's last click (submission or retry): elapsed times count from it.
    requested_at: Mapped[dt.datetime | None] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]

    product: Mapped[Product] = relationship(back_populates="jobs")
    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="JobEvent.id",
    )

    # Secrets never reach the database, whichever code path writes the text (catwalk/scrub.py).
    @validates("error_message")
    def _scrub_error(self, _key: str, value: str | None) -> str | None:
        return scrub(value)

    def __repr__(self) -> str:
        return f"VideoJob(id={self.id!r}, product_id={self.product_id!r}, status={self.status})"


class JobEvent(Base):
    """The timeline of a job: each step's start, attempt, success or failure."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("video_jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[Timestamp] = mapped_column(default=utcnow)
    step: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(32))  # started | succeeded | failed | info
    message: Mapped[str] = mapped_column(Text, default="")

    job: Mapped[VideoJob] = relationship(back_populates="events")

    @validates("message")
    def _scrub_message(self, _key: str, value: str) -> str:
        return scrub(value)

    def __repr__(self) -> str:
        return f"JobEvent(job_id={self.job_id!r}, step={self.step!r}, kind={self.kind!r})"


class LedgerEntry(Base):
    """One provider call, paid or attempted: the single source of cost truth."""

    __tablename__ = "cost_ledger"
    __table_args__ = (
        Index("ix_cost_ledger_created_at", "created_at"),
        Index("ix_cost_ledger_job_id", "job_id"),
        # Statistics read only these columns over a date range: on PostgreSQL this makes
        # the scan index-only (bench/stats.py measures it at 1,000,000 rows).
        Index(
            "ix_cost_ledger_stats",
            "created_at",
            postgresql_include=[
                "service",
                "provider",
                "model",
                "resolution",
                "succeeded",
                "amount",
            ],
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("video_jobs.id", ondelete="SET NULL"))
    service: Mapped[str] = mapped_column(String(32))  # nano_banana | pika
    provider: Mapped[str] = mapped_column(String(32))  # gemini | fal | offline
    operation: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    resolution: Mapped[str | None] = mapped_column(String(32))
    units: Mapped[Decimal] = mapped_column(default=Decimal(0))
    unit: Mapped[str] = mapped_column(String(32))
    unit_price: Mapped[Money] = mapped_column(default=Decimal(0))
    amount: Mapped[Money] = mapped_column(default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    price_date: Mapped[dt.date | None] = mapped_column(Date)
    provider_request_id: Mapped[str | None] = mapped_column(String(255))
    succeeded: Mapped[bool] = mapped_column(default=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"LedgerEntry(service={self.service!r}, amount={self.amount}, job={self.job_id!r})"


class LedgerHour(Base):
    """The ledger summed per UTC hour and kind of call, written in the same transaction as
    each ledger row, so statistics over a year read thousands of rows instead of millions.

    Derived data: ``db.stats.rebuild_hourly_rollup`` recomputes it from the ledger.
    """

    __tablename__ = "cost_ledger_hourly"

    hour: Mapped[Timestamp] = mapped_column(primary_key=True)
    service: Mapped[str] = mapped_column(String(32), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    # "" for calls without a resolution: key columns cannot be NULL.
    resolution: Mapped[str] = mapped_column(String(32), primary_key=True)
    succeeded: Mapped[bool] = mapped_column(primary_key=True)
    amount: Mapped[Money] = mapped_column(default=Decimal(0))
    calls: Mapped[int] = mapped_column(Integer, default=0)

    def __repr__(self) -> str:
        return f"LedgerHour(hour={self.hour}, model={self.model!r}, amount={self.amount})"


class UsageDay(Base):
    """Per-day counters the limit check locks, so parallel submissions cannot overshoot."""

    __tablename__ = "usage_days"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    generations: Mapped[int] = mapped_column(Integer, default=0)
    reserved_cost: Mapped[Money] = mapped_column(default=Decimal(0))

    def __repr__(self) -> str:
        return f"UsageDay(day={self.day}, generations={self.generations})"


class Alert(Base):
    """Something admins must see: recorded once per ``dedupe_key``, shown until acknowledged."""

    __tablename__ = "alerts"

    id: Mapped[IdStr]
    kind: Mapped[str] = mapped_column(String(64))  # daily_cost | monthly_cost | job_failed
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    message: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]
    delivery_error: Mapped[str | None] = mapped_column(Text)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A sender claims the alert before posting it, so two senders never post it twice.
    delivery_claimed_at: Mapped[dt.datetime | None]

    @validates("message", "delivery_error")
    def _scrub_text(self, _key: str, value: str | None) -> str | None:
        return scrub(value)

    def __repr__(self) -> str:
        return f"Alert(kind={self.kind!r}, dedupe_key={self.dedupe_key!r})"


class WebhookDelivery(Base):
    """One completion event for the shop's webhook: recorded once, retried until delivered."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[IdStr]
    event: Mapped[str] = mapped_column(String(32))  # job.completed | job.failed
    job_id: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    payload: Mapped[str] = mapped_column(Text)  # the exact JSON body that is signed
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]
    delivery_error: Mapped[str | None] = mapped_column(Text)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"WebhookDelivery(event={self.event!r}, job_id={self.job_id!r})"


class PendingDeletion(Base):
    """A replaced file still to delete; retried by housekeeping, never forgotten."""

    __tablename__ = "pending_deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(1024))
    reason: Mapped[str] = mapped_column(String(255), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None]

    def __repr__(self) -> str:
        return f"PendingDeletion(key={self.key!r}, attempts={self.attempts})"


class SigninThrottle(Base):
    """Failed dashboard sign-ins (scope "global"), shared by every dashboard process."""

    __tablename__ = "signin_throttle"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None]
    updated_at: Mapped[Timestamp] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"SigninThrottle(scope={self.scope!r}, failures={self.failures})"


class DashboardSession(Base):
    """A signed-in dashboard browser: its cookie names this row, so signing out (revoked_at)
    ends it in every process at once, whatever the cookie's own expiry says."""

    __tablename__ = "dashboard_sessions"

    # Random; the signed cookie carries it.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)
    expires_at: Mapped[Timestamp] = mapped_column(index=True)
    revoked_at: Mapped[dt.datetime | None]
    # SHA-256 of the one-time token the browser trades for the cookie; cleared once traded.
    handoff_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_until: Mapped[dt.datetime | None]

    def __repr__(self) -> str:
        return (
            f"DashboardSession(id={self.id[:6]!r}..., admin={self.admin!r}, "
            f"expires_at={self.expires_at!r}, revoked_at={self.revoked_at!r})"
        )


__all__ = [
    "Alert",
    "Base",
    "DashboardSession",
    "JobEvent",
    "LedgerEntry",
    "LedgerHour",
    "PendingDeletion",
    "Product",
    "SigninThrottle",
    "UsageDay",
    "VideoJob",
    "new_id",
]


class SlotHolder(Base):
    """One provider concurrency slot catwalk holds (or is acquiring), kept next to the lease.

    The lease store (Redis) can lose or leak slots; these rows are what catwalk knows it
    holds, so a reconciler can set each limit's ``active_slots`` back to the truth
    (tasks/slots.py). ``lease_id`` is set once the slot is granted; a row whose release
    failed keeps it (``release_pending``) so the lease is released later, not forgotten.
    """

    __tablename__ = "slot_holders"
    __table_args__ = (Index("ix_slot_holders_limit_name", "limit_name"),)

    id: Mapped[IdStr]
    limit_name: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[str | None] = mapped_column(String(64))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    hostname: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    lease_id: Mapped[str | None] = mapped_column(String(64))
    acquired_at: Mapped[dt.datetime | None]
    release_pending: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return (
            f"SlotHolder(limit={self.limit_name!r}, job={self.job_id!r}, lease={self.lease_id!r})"
        )
