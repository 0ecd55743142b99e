"""Daily limits: a job reserves one generation and its estimated cost before it may spend,
and the reservation is corrected to the ledger's actual cost when the job ends.

"Daily" is a day in ``LIMITS_TIMEZONE``. The counters live in ``usage_days``, one row per
day. A submission charges the day with one conditional ``UPDATE ... RETURNING`` (count it
only if it still fits), the last statement before its commit: every submission of the day
writes that one row, so the row lock is held for that statement and the commit, never
while the job is recorded. The database checks the condition against the row it locked
(PostgreSQL re-reads a row another transaction changed before updating it; SQLite has one
writer at a time), so parallel submissions cannot overshoot the limit on either backend.
When the update charges nothing (a new day's first submission, a refusal) the row is read
``FOR UPDATE`` and decided in Python, as exactly, to say why.

Must not import clients, tasks, flows or dashboards.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from catwalk.db import queries
from catwalk.db.base import utcnow
from catwalk.db.models import LedgerEntry, UsageDay, VideoJob
from sqlalchemy import Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from catwalk.config import Settings
from catwalk.domain import JobOptions, JobStatus
from catwalk.errors import ConfigError, InputError, LimitExceeded


def limits_zone(settings: Settings) -> ZoneInfo:
    try:
        return ZoneInfo(settings.limits_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"LIMITS_TIMEZONE {settings.limits_timezone!r} is not a time zone"
        ) from exc


def limits_day(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """Today, in the limits' time zone."""
    return (now or utcnow()).astimezone(limits_zone(settings)).date()


def day_bounds(settings: Settings, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where ``day`` (in the limits' time zone) starts and ends."""
    zone = limits_zone(settings)
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def _reset_phrase(settings: Settings, now: dt.datetime) -> tuple[str, int]:
    """("resets at 00:00 UTC", seconds until then) for the day containing ``now``."""
    _, reset = day_bounds(settings, limits_day(settings, now))
    seconds = max(1, int((reset - now).total_seconds() + 0.999))
    local = reset.astimezone(limits_zone(settings))
    return f"resets at {local:%H:%M} {settings.limits_timezone}", seconds


def _money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def _locked_day(session: Session, day: dt.date) -> UsageDay:
    # Insert first: a new day's row exists (and is locked) before anyone reads it.
    queries.insert_or_ignore(
        session=session,
        model=UsageDay,
        values={"day": day, "generations": 0, "reserved_cost": Decimal(0)},
        key="day",
    )
    return session.execute(
        select(UsageDay)
        .where(UsageDay.day == day)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


@cache
def _charge_statement(*, with_budget: bool) -> Update:
    # Built once: a submission only binds the day, the limit, the cost and the budget.
    cost = bindparam("cost", type_=UsageDay.__table__.c.reserved_cost.type)
    # Rounded to the column's scale: SQLite keeps NUMERIC as a float, and a sum that drifted
    # by 1e-16 must neither pass nor fail the budget.
    reserved = func.round(UsageDay.reserved_cost + cost, 6)
    fits = [
        UsageDay.day == bindparam("charged_day"),
        UsageDay.generations + 1 <= bindparam("limit"),
    ]
    if with_budget:
        fits.append(reserved <= bindparam("budget", type_=cost.type))
    return (
        update(UsageDay)
        .where(*fits)
        .values(generations=UsageDay.generations + 1, reserved_cost=reserved)
        .returning(UsageDay.day)
        .execution_options(synchronize_session=False)
    )


def _charge(session: Session, *, day: dt.date, settings: Settings, cost: Decimal) -> bool:
    """Count one generation and ``cost`` against ``day`` if both still fit; True if it did."""
    budget = settings.daily_budget
    charged = session.execute(
        _charge_statement(with_budget=budget is not None),
        {
            "charged_day": day,
            "limit": settings.daily_generation_limit,
            "cost": cost,
            "budget": budget,
        },
    ).first()
    return charged is not None


def reserve_generation(
    *, session: Session, settings: Settings, estimated_cost: Decimal, now: dt.datetime | None = None
) -> dt.date:
    """Count one generation and its estimated cost against today, or refuse with the reason.

    Returns the day charged. Runs in the caller's transaction: if the caller rolls back,
    so does the reservation. Call it last before the commit: from here on the transaction
    holds the day's row, which every other submission of the day waits for.
    """
    now = now or utcnow()
    day = limits_day(settings, now)
    if _charge(session, day=day, settings=settings, cost=estimated_cost):
        return day
    usage = _locked_day(session, day)
    limit = settings.daily_generation_limit
    if usage.generations + 1 > limit:
        resets, seconds = _reset_phrase(settings, now)
        noun = "video" if limit == 1 else "videos"
        raise LimitExceeded(
            f"daily limit of {limit} {noun} reached; {resets}", retry_after_seconds=seconds
        )
    budget = settings.daily_budget
    if budget is not None and usage.reserved_cost + estimated_cost > budget:
        resets, seconds = _reset_phrase(settings, now)
        raise LimitExceeded(
            f"daily budget of {_money(budget)} reached ({_money(usage.reserved_cost)} spent or "
            f"reserved today, a video needs about {_money(estimated_cost)}); {resets}",
            retry_after_seconds=seconds,
        )
    # It fits after all: the row was new, or a job gave back its reservation in between.
    usage.generations += 1
    usage.reserved_cost += estimated_cost
    session.flush()
    return day


@dataclass(frozen=True, slots=True)
class Admission:
    """What a submission got: the new job, or the product's job already in flight."""

    job_id: str
    status: JobStatus
    created: bool


def admit(
    *,
    session: Session,
    settings: Settings,
    product_id: str,
    options: JobOptions,
    estimated_cost: Decimal,
    now: dt.datetime | None = None,
) -> Admission:
    """Record a new job inside today's limits, or return the product's job in flight.

    Returning the job in flight reserves nothing: a double click never uses a generation.
    Raises ``LimitExceeded`` (the caller rolls back: nothing recorded) when today's limit
    or budget is used up. The job is written before the day is charged, so the day's row
    is locked only from the charge to the caller's commit; the caller commits at once.
    """
    now = now or utcnow()
    day = limits_day(settings, now)
    # Twice at most: the job in flight that made the insert do nothing may end before we
    # read it, and then the product is free again.
    for _ in range(2):
        job_id = queries.insert_job(
            session=session,
            product_id=product_id,
            options=options,
            usage_day=day,
            estimated_cost=estimated_cost,
        )
        if job_id is not None:
            reserve_generation(
                session=session, settings=settings, estimated_cost=estimated_cost, now=now
            )
            return Admission(job_id, JobStatus.PENDING, created=True)
        existing = queries.active_job_for(session=session, product_id=product_id)
        if existing is not None:
            return Admission(existing.id, existing.status, created=False)
    raise InputError(f"product {product_id}'s jobs changed while it was submitted; submit again")


def admit_job(
    *,
    session: Session,
    settings: Settings,
    product_id: str,
    options: JobOptions,
    estimated_cost: Decimal,
    now: dt.datetime | None = None,
) -> tuple[VideoJob, bool]:
    """``admit`` for a caller that goes on to change the job in the same transaction."""
    queries.get_product(session=session, product_id=product_id)
    admission = admit(
        session=session,
        settings=settings,
        product_id=product_id,
        options=options,
        estimated_cost=estimated_cost,
        now=now,
    )
    job = session.get(VideoJob, admission.job_id)
    assert job is not None  # recorded or found in this transaction
    return job, admission.created


def reconcile_job(*, session: Session, job_id: str) -> Decimal | None:
    """Swap a finished job's estimate for its actual cost in its day's reservation.

    Runs once per job (a conditional update marks it), whoever calls it. A job that failed
    before any provider call was recorded gives its generation back. Returns the
    correction applied (actual - estimate), or None when there was nothing to do.
    """
    job = session.get(VideoJob, job_id)
    if job is None or job.usage_day is None or job.status.is_active:
        return None
    claimed = session.execute(
        update(VideoJob)
        .where(VideoJob.id == job_id, VideoJob.cost_reconciled_at.is_(None))
        .values(cost_reconciled_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        return None
    queries.refresh_job_costs(session=session, job_id=job_id)
    calls = session.scalar(select(func.count()).where(LedgerEntry.job_id == job_id)) or 0
    usage = _locked_day(session, job.usage_day)
    correction = job.total_cost - job.estimated_cost
    usage.reserved_cost += correction
    if calls == 0 and job.status is not JobStatus.COMPLETED:
        usage.generations = max(0, usage.generations - 1)
    session.flush()
    session.refresh(job)
    return correction


@dataclass(frozen=True, slots=True)
class TodayUsage:
    """Today's use against the limits, for the dashboard, the API and ``catwalk stats``."""

    day: dt.date
    timezone: str
    generations: int
    generation_limit: int
    reserved_cost: Decimal
    spend: Decimal
    budget: Decimal | None
    resets_at: dt.datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "date": self.day.isoformat(),
            "timezone": self.timezone,
            "generations": self.generations,
            "generationLimit": self.generation_limit,
            "reservedCost": float(self.reserved_cost),
            "spend": float(self.spend),
            "budget": float(self.budget) if self.budget is not None else None,
            "resetsAt": self.resets_at.isoformat(),
        }


def spend_between(*, session: Session, start: dt.datetime, end: dt.datetime) -> Decimal:
    """Ledger spend in ``[start, end)``."""
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.created_at >= start, LedgerEntry.created_at < end
        )
    )
    return Decimal(total or 0)


def today_usage(
    *, session: Session, settings: Settings, now: dt.datetime | None = None
) -> TodayUsage:
    day = limits_day(settings, now)
    start, end = day_bounds(settings, day)
    row = session.get(UsageDay, day, populate_existing=True)
    return TodayUsage(
        day=day,
        timezone=settings.limits_timezone,
        generations=row.generations if row else 0,
        generation_limit=settings.daily_generation_limit,
        reserved_cost=row.reserved_cost if row else Decimal(0),
        spend=spend_between(session=session, start=start, end=end),
        budget=settings.daily_budget,
        resets_at=end.astimezone(limits_zone(settings)),
    )
