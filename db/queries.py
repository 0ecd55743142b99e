"""Reads and writes of catwalk's tables. Keyword-only, and every function takes the Session
it works in, so callers decide the transaction. Never imports clients, tasks or flows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from functools import cache
from typing import Any, cast

from catwalk.db.base import Base, new_id, utcnow
from catwalk.db.models import (
    ACTIVE_JOB_SQL,
    JobEvent,
    LedgerEntry,
    LedgerHour,
    PendingDeletion,
    Product,
    VideoJob,
)
from sqlalchemy import Table, func, select, text
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session
from sqlalchemy.sql.dml import Insert

from catwalk import failures
from catwalk.domain import ACTIVE_STATUSES, STEP_PROGRESS, JobOptions, JobStatus, Usage
from catwalk.errors import ConfigError, InputError, ProductNotFound
from catwalk.identifiers import check_id, check_image_ref, clean_name, is_valid_id


def upsert_product(*, session: Session, product_id: str, name: str, images: list[str]) -> Product:
    # Every product write comes through here: the id rule and the name rule (identifiers.py).
    product_id, name = check_id(product_id), clean_name(name)
    images = [check_image_ref(i) for i in images]
    product = session.get(Product, product_id)
    if product is None:
        product = Product(id=product_id, name=name, images=list(images))
        session.add(product)
    else:
        product.name = name
        product.images = list(images)
    session.flush()
    return product


def get_product(*, session: Session, product_id: str) -> Product:
    # An id outside the rule cannot exist; asking the database (NUL, surrogates) would fail.
    product = session.get(Product, product_id) if is_valid_id(product_id) else None
    if product is None:
        raise ProductNotFound(product_id)
    return product


def product_images(*, session: Session, product_id: str) -> list[str]:
    """A product's photo references, without loading the product (a submission's read)."""
    images = (
        session.execute(select(Product.images).where(Product.id == product_id)).scalar_one_or_none()
        if is_valid_id(product_id)
        else None
    )
    if images is None:
        raise ProductNotFound(product_id)
    return list(images)


def list_products(*, session: Session) -> Sequence[Product]:
    return session.scalars(select(Product).order_by(Product.created_at, Product.id)).all()


def active_job_for(*, session: Session, product_id: str) -> VideoJob | None:
    return session.scalars(
        select(VideoJob).where(
            VideoJob.product_id == product_id, VideoJob.status.in_(ACTIVE_STATUSES)
        )
    ).first()


def create_job(
    *, session: Session, product_id: str, options: JobOptions, usage_day: dt.date | None = None
) -> tuple[VideoJob, bool]:
    """Record a PENDING job, or return the product's job in flight (``created`` False).

    The partial unique index on active jobs makes this safe under concurrent submissions:
    the loser of a race gets an IntegrityError and returns the winner's job.
    """
    get_product(session=session, product_id=product_id)
    existing = active_job_for(session=session, product_id=product_id)
    if existing is not None:
        return existing, False
    job_id = new_id()
    job = VideoJob(
        id=job_id,
        product_id=product_id,
        options=options.to_dict(),
        status=JobStatus.PENDING,
        usage_day=usage_day,
        # The same seed for both keyframes keeps the same model; 28 bits fit every INTEGER.
        identity_seed=int(job_id[:7], 16),
    )
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        existing = active_job_for(session=session, product_id=product_id)
        if existing is None:
            raise
        return existing, False
    record_event(session=session, job_id=job.id, step="submit", kind="info", message="job queued")
    return job, True


@cache
def _job_insert(dialect: str) -> Insert:
    # Built once per backend: a submission only binds its values (Core, no ORM flush).
    table = cast(Table, VideoJob.__table__)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(table)
        .on_conflict_do_nothing(
            index_elements=[table.c.product_id], index_where=text(ACTIVE_JOB_SQL)
        )
        .returning(table.c.id)
    )


_EVENT_INSERT = sa_insert(cast(Table, JobEvent.__table__))


def insert_job(
    *,
    session: Session,
    product_id: str,
    options: JobOptions,
    usage_day: dt.date | None = None,
    estimated_cost: Decimal = Decimal(0),
) -> str | None:
    """Record a PENDING job unless the product has one in flight; the new job's id, or None.

    One ``INSERT ... ON CONFLICT DO NOTHING`` on the partial unique index of active jobs:
    racing submissions for a product leave one job, and no loser needs a savepoint or an
    error to find out. The product must exist (the foreign key refuses it otherwise).
    """
    job_id = new_id()
    values = {
        "id": job_id,
        "product_id": product_id,
        "options": options.to_dict(),
        "status": JobStatus.PENDING,
        "usage_day": usage_day,
        "estimated_cost": estimated_cost,
        # The same seed for both keyframes keeps the same model; 28 bits fit every INTEGER.
        "identity_seed": int(job_id[:7], 16),
    }
    inserted = session.execute(_job_insert(session.get_bind().dialect.name), values).first()
    if inserted is None:
        return None
    session.execute(
        _EVENT_INSERT, {"job_id": job_id, "step": "submit", "kind": "info", "message": "job queued"}
    )
    return job_id


def get_job(*, session: Session, job_id: str) -> VideoJob | None:
    return session.get(VideoJob, job_id) if is_valid_id(job_id) else None


#: The shortest job-id prefix accepted: 6 hex characters make a clash between a shop's
#: jobs of one year unlikely, and a clash is refused, never guessed.
MIN_JOB_PREFIX = 6


def resolve_job_id(*, session: Session, given: str) -> str:
    """The full id of the one job whose id is ``given`` or starts with it (>= 6 characters).

    Raises InputError for an unknown id, a prefix too short, or one matching several jobs.
    """
    given = given.strip().lower()
    if session.get(VideoJob, given) is not None:
        return given
    escaped = given.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    matches = list(
        session.scalars(
            select(VideoJob.id).where(VideoJob.id.like(f"{escaped}%", escape="\\")).limit(3)
        )
    )
    if not matches:
        raise InputError(f"unknown job {given!r}")
    if len(given) < MIN_JOB_PREFIX:
        raise InputError(
            f"job id prefix {given!r} is too short: give at least {MIN_JOB_PREFIX} characters"
        )
    if len(matches) > 1:
        shown = ", ".join(m[:12] for m in matches[:2])
        raise InputError(f"job id prefix {given!r} matches several jobs ({shown}, ...): give more")
    return matches[0]


def list_jobs(
    *, session: Session, limit: int = 100, statuses: Sequence[JobStatus] | None = None
) -> Sequence[VideoJob]:
    stmt = select(VideoJob).order_by(VideoJob.created_at.desc(), VideoJob.id).limit(limit)
    if statuses:
        stmt = stmt.where(VideoJob.status.in_(statuses))
    return session.scalars(stmt).all()


def record_event(
    *, session: Session, job_id: str, step: str, kind: str, message: str = "", attempt: int = 1
) -> None:
    session.add(JobEvent(job_id=job_id, step=step, kind=kind, message=message, attempt=attempt))


def set_job_step(
    *,
    session: Session,
    job: VideoJob,
    status: JobStatus,
    current_step: str,
    progress: int | None = None,
) -> None:
    """Move a job to a step; progress never goes backwards (a retry keeps what was done)."""
    job.status = status
    job.current_step = current_step
    target = STEP_PROGRESS.get(status, job.progress) if progress is None else progress
    job.progress = max(job.progress, min(100, target))
    job.wait_reason = None
    if job.started_at is None and status is not JobStatus.PENDING:
        job.started_at = utcnow()


def record_usage(
    *,
    session: Session,
    job_id: str | None,
    usage: Usage,
    unit_price: Decimal,
    amount: Decimal,
    price_date: dt.date | None,
    attempt: int = 1,
    succeeded: bool = True,
    note: str | None = None,
    at: dt.datetime | None = None,
) -> LedgerEntry:
    """Add one ledger row (and its hourly rollup) and re-derive the job's totals from the ledger.

    ``at`` is when the call was made (now unless given: imports and tests back-date rows).
    """
    at = at or utcnow()
    entry = LedgerEntry(
        created_at=at,
        job_id=job_id,
        service=usage.service,
        provider=usage.provider,
        operation=usage.operation,
        model=usage.model,
        resolution=usage.resolution,
        units=usage.units,
        unit=usage.unit,
        unit_price=unit_price,
        amount=amount,
        price_date=price_date,
        provider_request_id=usage.request_id,
        succeeded=succeeded,
        attempt=attempt,
        note=note,
    )
    session.add(entry)
    session.flush()
    _add_to_hourly_rollup(session=session, entry=entry)
    if job_id is not None:
        refresh_job_costs(session=session, job_id=job_id)
    return entry


def _add_to_hourly_rollup(*, session: Session, entry: LedgerEntry) -> None:
    values = {
        "hour": entry.created_at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0),
        "service": entry.service,
        "provider": entry.provider,
        "model": entry.model,
        "resolution": entry.resolution or "",
        "succeeded": entry.succeeded,
        "amount": entry.amount,
        "calls": 1,
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(LedgerHour).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["hour", "service", "provider", "model", "resolution", "succeeded"],
        set_={
            "amount": LedgerHour.amount + stmt.excluded.amount,
            "calls": LedgerHour.calls + stmt.excluded.calls,
        },
    )
    session.execute(stmt)


def refresh_job_costs(*, session: Session, job_id: str) -> None:
    """Job totals are derived from the ledger, so the two can never disagree."""
    rows = session.execute(
        select(LedgerEntry.service, func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.job_id == job_id)
        .group_by(LedgerEntry.service)
    ).all()
    by_service: dict[str, Decimal] = {service: Decimal(total) for service, total in rows}
    job = session.get(VideoJob, job_id)
    if job is None:
        return
    job.nano_banana_cost = by_service.get("nano_banana", Decimal(0))
    job.pika_labs_cost = by_service.get("pika", Decimal(0))
    job.total_cost = sum(by_service.values(), Decimal(0))


def ledger_for_job(*, session: Session, job_id: str) -> Sequence[LedgerEntry]:
    return session.scalars(
        select(LedgerEntry).where(LedgerEntry.job_id == job_id).order_by(LedgerEntry.id)
    ).all()


def events_for_job(*, session: Session, job_id: str) -> Sequence[JobEvent]:
    return session.scalars(
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    ).all()


def switch_product_video(
    *, session: Session, job: VideoJob, video_key: str, poster_key: str, video_url: str
) -> list[str]:
    """Point the product at the job's new files; return the keys it pointed at before.

    Runs inside the caller's transaction: the product switches to the new video, the job
    that made the old one stops referring to it, and the old files are queued for deletion,
    together or not at all. ``video_url`` must be a lasting URL (``BlobStore.public_url``),
    never a presigned one. Calling it again for the same job changes nothing.
    """
    product = session.get(Product, job.product_id, with_for_update=True)
    if product is None:
        raise ProductNotFound(job.product_id)
    old_keys = [k for k in (product.video_key, product.poster_key) if k]
    previous_job_id = product.video_job_id
    product.video_key = video_key
    product.poster_key = poster_key
    product.video_url = video_url
    product.video_job_id = job.id
    product.video_updated_at = utcnow()
    new_keys = {video_key, poster_key}
    stale = [k for k in old_keys if k not in new_keys]
    for key in stale:
        session.add(PendingDeletion(key=key, reason=f"replaced by job {job.id}"))
    previous = session.get(VideoJob, previous_job_id) if previous_job_id else None
    if previous is not None and previous.id != job.id and stale:
        # The old job's record must not point at files about to be deleted; its event
        # keeps the history of what it published and what replaced it.
        record_event(
            session=session,
            job_id=previous.id,
            step="publish",
            kind="info",
            message=f"video {previous.video_key} replaced by job {job.id}",
        )
        if previous.video_key in stale:
            previous.video_key = None
        if previous.poster_key in stale:
            previous.poster_key = None
    return stale


def key_in_use(*, session: Session, key: str) -> bool:
    """True when a product or a job still refers to ``key`` (such a file is never deleted)."""
    product = session.scalars(
        select(Product.id).where((Product.video_key == key) | (Product.poster_key == key)).limit(1)
    ).first()
    if product is not None:
        return True
    job = session.scalars(
        select(VideoJob.id)
        .where((VideoJob.video_key == key) | (VideoJob.poster_key == key))
        .limit(1)
    ).first()
    return job is not None


def pending_deletions(*, session: Session, limit: int = 100) -> Sequence[PendingDeletion]:
    return session.scalars(
        select(PendingDeletion)
        .where(PendingDeletion.done_at.is_(None))
        .order_by(PendingDeletion.id)
        .limit(limit)
    ).all()


def record_deletion_attempt(
    *, session: Session, deletion_id: int, error: str | None, note: str | None = None
) -> None:
    """Count one attempt; an attempt without error closes the row (``note`` says why)."""
    row = session.get(PendingDeletion, deletion_id)
    if row is None:
        return
    row.attempts += 1
    row.last_error = error if error is not None else note
    if error is None:
        row.done_at = utcnow()


DEFAULT_JOB_SECONDS = 150  # before any job has finished here: the providers' usual pace
_TYPICAL_SAMPLE = 50
_TYPICAL_TTL_SECONDS = 60.0
_typical: dict[str, tuple[float, int]] = {}  # database URL -> (measured at, seconds)


def typical_job_seconds(session: Session) -> int:
    """The median click-to-done time of the last completed jobs (cached for a minute: every
    GET of a job asks, and a minute-old median is as good)."""
    import time

    bind = session.get_bind()
    key = str(getattr(bind, "url", bind))
    cached = _typical.get(key)
    if cached is not None and time.monotonic() - cached[0] < _TYPICAL_TTL_SECONDS:
        return cached[1]
    rows = session.execute(
        select(VideoJob.requested_at, VideoJob.completed_at)
        .where(VideoJob.status == JobStatus.COMPLETED, VideoJob.requested_at.is_not(None))
        .order_by(VideoJob.created_at.desc())  # ix_video_jobs_status_created: no sort
        .limit(_TYPICAL_SAMPLE)
    ).all()
    took = sorted((done - asked).total_seconds() for asked, done in rows if asked and done)
    seconds = round(took[len(took) // 2]) if len(took) >= 3 else DEFAULT_JOB_SECONDS
    _typical[key] = (time.monotonic(), max(1, seconds))
    return _typical[key][1]


def estimate_remaining_seconds(job: VideoJob, *, typical_seconds: int | None = None) -> int | None:
    """Seconds left: the typical job's length (measured here) minus the time since the click.

    It only goes down. Progress percentages are not a pace (keyframes take seconds, the
    video minutes), so a pace-based guess rises while the video renders. Past the typical
    length (``is_overdue``) the guess comes from the pace after all, floored at 5 s, and
    the dashboard says the job is taking longer than usual.
    """
    if job.status.is_final:
        return 0 if job.status is JobStatus.COMPLETED else None
    if typical_seconds is None:
        session = object_session(job)
        typical_seconds = typical_job_seconds(session) if session else DEFAULT_JOB_SECONDS
    elapsed = _since_click(job)
    if elapsed < typical_seconds:
        return max(1, round(typical_seconds - elapsed))
    if job.progress <= 0:
        return 5
    return max(5, round(elapsed * (100 - job.progress) / job.progress))


def is_overdue(job: VideoJob, typical_seconds: int) -> bool:
    return not job.status.is_final and _since_click(job) >= typical_seconds


def _since_click(job: VideoJob) -> float:
    asked = job.requested_at or job.created_at
    return max(0.0, (utcnow() - asked).total_seconds())


def job_to_contract(
    job: VideoJob, *, video_url: str | None = None, poster_url: str | None = None
) -> dict[str, Any]:
    """The original GET job contract's JSON object (plus ``productId``)."""
    payload: dict[str, Any] = {
        "jobId": job.id,
        "productId": job.product_id,
        "status": job.status.value,
        "progress": job.progress,
        "currentStep": job.current_step,
        "estimatedTimeRemaining": estimate_remaining_seconds(job),
        "cost": {
            "nanoBanana": float(job.nano_banana_cost),
            "pikaLabs": float(job.pika_labs_cost),
            "total": float(job.total_cost),
        },
    }
    if job.status is JobStatus.COMPLETED:
        payload["result"] = {
            "videoUrl": video_url,
            "thumbnailUrl": poster_url,
            "duration": job.video_duration_seconds,
        }
    if job.error_message:
        payload["error"] = job.error_message
    quality = quality_summary(job.quality)
    if quality is not None:
        payload["quality"] = quality
    if job.review_mode and job.review_mode != "none":
        payload["review"] = review_summary(job)
    explained = failures.explain(job.status, job.failure_kind, job.error_message)
    if explained is not None:
        payload["failure"] = {k: v for k, v in explained.as_dict().items() if k != "details"}
    return payload


def review_summary(job: VideoJob) -> dict[str, Any]:
    """The job's review points as the API shows them."""
    from catwalk.config import get_settings

    hours = get_settings().review_expires_hours
    since = job.awaiting_since
    return {
        "mode": job.review_mode,
        "waitingFor": job.awaiting,
        "since": since.isoformat() if since else None,
        "expiresAt": (since + dt.timedelta(hours=hours)).isoformat() if since else None,
        "approveCost": float(job.review_quote)
        if job.awaiting and job.review_quote is not None
        else None,
        "decisions": list((job.review or {}).get("decisions", [])),
    }


def quality_summary(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The job's keyframe check as the API shows it (None when the check never ran)."""
    if not raw or not raw.get("mode"):
        return None
    verdicts = [
        {
            "verdict": v.get("verdict"),
            "garmentMatch": v.get("garmentMatch"),
            "samePerson": v.get("samePerson"),
            "failedFrames": list(v.get("failedFrames") or []),
            "issues": list(v.get("issues") or []),
            "cost": float(Decimal(str(v.get("cost") or 0))),
        }
        for v in raw.get("verdicts") or []
    ]
    last = verdicts[-1] if verdicts else {}
    return {
        "mode": raw["mode"],
        "judge": raw.get("judge"),
        "verdict": last.get("verdict"),
        "garmentMatch": last.get("garmentMatch"),
        "samePerson": last.get("samePerson"),
        "failedFrames": last.get("failedFrames", []),
        "issues": last.get("issues", []),
        "regenerations": int(raw.get("regenerations") or 0),
        "regenerationCost": float(Decimal(str(raw.get("regenerationCost") or 0))),
        "checkCost": float(Decimal(str(raw.get("checkCost") or 0))),
        "checks": verdicts,
    }


def insert_or_ignore(
    *, session: Session, model: type[Base], values: dict[str, Any], key: str
) -> bool:
    """Insert one row unless one with the same ``key`` exists; True when this call inserted.

    ``INSERT ... ON CONFLICT DO NOTHING`` on both backends, so many writers racing on the
    same key (workers, retries, replicas) leave exactly one row and never an error.
    """
    dialect = session.get_bind().dialect.name
    stmt: Insert
    if dialect == "postgresql":
        stmt = pg_insert(model).values(**values).on_conflict_do_nothing(index_elements=[key])
    elif dialect == "sqlite":
        stmt = sqlite_insert(model).values(**values).on_conflict_do_nothing(index_elements=[key])
    else:
        raise ConfigError(f"database {dialect!r} is not supported")
    result = session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def products_needing_video(
    *, session: Session, stale_before: dt.datetime, limit: int | None = None
) -> list[str]:
    """Ids of products with no video, or one older than ``stale_before``, and no job in flight."""
    in_flight = select(VideoJob.product_id).where(VideoJob.status.in_(ACTIVE_STATUSES))
    stmt = (
        select(Product.id)
        .where(
            (Product.video_key.is_(None)) | (Product.video_updated_at < stale_before),
            Product.id.not_in(in_flight),
        )
        .order_by(Product.video_updated_at.is_not(None), Product.video_updated_at, Product.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt).all())


def active_jobs(*, session: Session, created_before: dt.datetime) -> Sequence[VideoJob]:
    """Jobs still in flight that were recorded before ``created_before``."""
    return session.scalars(
        select(VideoJob)
        .where(VideoJob.status.in_(ACTIVE_STATUSES), VideoJob.created_at < created_before)
        .order_by(VideoJob.created_at)
    ).all()


def count_events(*, session: Session, job_id: str, step: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.step == step)
        )
        or 0
    )
