"""Cost and job statistics for any date range: the original stats contract and more.

The database aggregates (one ``GROUP BY`` over the ledger, one over the jobs), so the rows
that reach Python are per day and model, not per call; pandas shapes them. Days are days
in ``LIMITS_TIMEZONE``, like the limits. The dashboard, the HTTP API and ``catwalk stats``
all call ``compute_stats``.

Must not import clients, tasks, flows or dashboards.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from catwalk.db import limits
from catwalk.db.models import LedgerEntry, LedgerHour, VideoJob
from sqlalchemy import Date, Integer, and_, cast, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from catwalk.config import Settings
from catwalk.domain import JobStatus

if TYPE_CHECKING:
    import pandas as pd

_LEDGER_COLUMNS = [
    "bucket",
    "service",
    "provider",
    "model",
    "resolution",
    "succeeded",
    "cost",
    "calls",
]
# SQLite cannot convert time zones, so it groups by quarter hour (every real UTC offset is a
# multiple of 15 minutes) and pandas assigns the buckets to local days.
_QUARTER_HOUR = 900
_HOUR = 3600


def _range(
    settings: Settings, date_from: dt.date | None, date_to: dt.date | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    start = limits.day_bounds(settings, date_from)[0] if date_from else None
    end = limits.day_bounds(settings, date_to)[1] if date_to else None
    return start, end


def _in_range(column: Any, start: dt.datetime | None, end: dt.datetime | None) -> list[Any]:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def _straddled_hours(
    session: Session, settings: Settings, start: dt.datetime | None, end: dt.datetime | None
) -> list[dt.datetime]:
    """UTC hours that contain a local midnight (none unless the zone's offset is not whole
    hours, like India's): rollup rows for those hours belong to two local days."""
    if start is None or end is None:
        first, last = session.execute(
            select(func.min(LedgerHour.hour), func.max(LedgerHour.hour))
        ).one()
        if first is None:
            return []
        start, end = start or first, end or last
    zone = limits.limits_zone(settings)
    day, last_day = (
        start.astimezone(zone).date(),
        end.astimezone(zone).date() + dt.timedelta(days=1),
    )
    hours = []
    while day <= last_day:
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
        if midnight.minute or midnight.second:
            hours.append(midnight.replace(minute=0, second=0, microsecond=0))
        day += dt.timedelta(days=1)
    return hours


def _grouped_spend(
    session: Session,
    settings: Settings,
    source: type[LedgerHour | LedgerEntry],
    conditions: list[Any],
) -> pd.DataFrame:
    """One GROUP BY over the rollup or the ledger: spend and calls per bucket and kind."""
    import pandas as pd  # lazily: ~1 CPU-s, and only the statistics need it

    postgres = session.get_bind().dialect.name == "postgresql"
    # Columns of either table, and either dialect's bucket expression.
    at: Any
    amount: Any
    calls: Any
    bucket: Any
    if source is LedgerHour:
        at, width = LedgerHour.hour, _HOUR
        amount, calls = func.sum(LedgerHour.amount), func.sum(LedgerHour.calls)
    else:
        at, width = LedgerEntry.created_at, _QUARTER_HOUR
        amount, calls = func.sum(LedgerEntry.amount), func.count()
    if postgres:
        bucket = cast(func.timezone(settings.limits_timezone, at), Date)
    else:
        bucket = (cast(func.strftime("%s", at), Integer) / width) * width
    keys = [
        bucket.label("bucket"),
        source.service,
        source.provider,
        source.model,
        source.resolution,
        source.succeeded,
    ]
    stmt = select(*keys, amount, calls).where(*conditions).group_by(*keys)
    frame = pd.DataFrame(session.execute(stmt).all(), columns=_LEDGER_COLUMNS)
    if postgres:
        frame["day"] = pd.to_datetime(frame["bucket"]).dt.date
    else:
        utc = pd.to_datetime(frame["bucket"].astype("int64"), unit="s", utc=True)
        frame["day"] = utc.dt.tz_convert(settings.limits_timezone).dt.date
    return frame.drop(columns="bucket")


def ledger_frame(
    *, session: Session, settings: Settings, start: dt.datetime | None, end: dt.datetime | None
) -> pd.DataFrame:
    """Spend and call counts per local day, service, provider, model, resolution, outcome.

    Reads the hourly rollup (tens of thousands of rows for a busy year, not millions). In a
    zone whose midnight is not on a UTC hour, the hours holding a midnight are read from
    the ledger rows themselves (PostgreSQL: one index range per such hour; SQLite, for
    small embedded data: the ledger throughout), so every day is exact.
    """
    import pandas as pd  # lazily: ~1 CPU-s, and only the statistics need it

    straddled = _straddled_hours(session, settings, start, end)
    if not straddled:
        frame = _grouped_spend(
            session, settings, LedgerHour, _in_range(LedgerHour.hour, start, end)
        )
    elif session.get_bind().dialect.name != "postgresql":
        frame = _grouped_spend(
            session, settings, LedgerEntry, _in_range(LedgerEntry.created_at, start, end)
        )
    else:
        rollup = _grouped_spend(
            session,
            settings,
            LedgerHour,
            [*_in_range(LedgerHour.hour, start, end), LedgerHour.hour.not_in(straddled)],
        )
        # One index range per straddled hour (a BitmapOr): a join against a list of hours
        # lets the planner pick a nested loop over the whole ledger.
        edge_hours = or_(
            *(
                and_(
                    LedgerEntry.created_at >= h, LedgerEntry.created_at < h + dt.timedelta(hours=1)
                )
                for h in straddled
            )
        )
        edges = _grouped_spend(
            session,
            settings,
            LedgerEntry,
            [*_in_range(LedgerEntry.created_at, start, end), edge_hours],
        )
        frame = pd.concat([rollup, edges], ignore_index=True) if len(edges) else rollup
    frame["cost"] = pd.to_numeric(frame["cost"], errors="coerce").fillna(0.0).astype(float)
    frame["calls"] = frame["calls"].astype(int)
    frame["succeeded"] = frame["succeeded"].astype(bool)
    frame["resolution"] = frame["resolution"].fillna("").replace("", "-")
    return frame


def rebuild_hourly_rollup(*, session: Session) -> int:
    """Recompute the hourly rollup from the ledger (after a bulk import); returns its rows."""
    session.execute(delete(LedgerHour))
    if session.get_bind().dialect.name == "postgresql":
        hour = func.timezone(
            "UTC", func.date_trunc("hour", func.timezone("UTC", LedgerEntry.created_at))
        )
    else:
        hour = func.strftime("%Y-%m-%d %H:00:00.000000", LedgerEntry.created_at)
    keys = [
        hour,
        LedgerEntry.service,
        LedgerEntry.provider,
        LedgerEntry.model,
        func.coalesce(LedgerEntry.resolution, ""),
        LedgerEntry.succeeded,
    ]
    session.execute(
        insert(LedgerHour).from_select(
            ["hour", "service", "provider", "model", "resolution", "succeeded", "amount", "calls"],
            select(*keys, func.sum(LedgerEntry.amount), func.count()).group_by(*keys),
        )
    )
    return session.scalar(select(func.count()).select_from(LedgerHour)) or 0


def job_frame(
    *, session: Session, start: dt.datetime | None, end: dt.datetime | None
) -> pd.DataFrame:
    """Jobs created in the range: count and total cost per status."""
    import pandas as pd  # lazily: ~1 CPU-s, and only the statistics need it

    stmt = (
        select(VideoJob.status, func.count(), func.coalesce(func.sum(VideoJob.total_cost), 0))
        .where(*_in_range(VideoJob.created_at, start, end))
        .group_by(VideoJob.status)
    )
    frame = pd.DataFrame(session.execute(stmt).all(), columns=["status", "jobs", "cost"])
    frame["status"] = frame["status"].map(lambda s: JobStatus(s).value)
    frame["cost"] = pd.to_numeric(frame["cost"]).astype(float)
    return frame.set_index("status")


def _money(value: float) -> float:
    return round(float(value), 6)


def _grouped(frame: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    grouped = frame.groupby(keys, dropna=False)[["cost", "calls"]].sum().reset_index()
    grouped = grouped.sort_values(["cost", "calls"], ascending=False)
    grouped["cost"] = grouped["cost"].map(_money)
    return [
        {key: (value.item() if hasattr(value, "item") else value) for key, value in row.items()}
        for row in grouped.to_dict(orient="records")
    ]


def _cost_by_date(
    frame: pd.DataFrame, date_from: dt.date | None, date_to: dt.date | None
) -> list[dict[str, Any]]:
    import pandas as pd  # lazily: ~1 CPU-s, and only the statistics need it

    daily = frame.groupby("day")["cost"].sum() if not frame.empty else pd.Series(dtype=float)
    first = date_from or (min(daily.index) if len(daily) else None)
    last = date_to or (max(daily.index) if len(daily) else None)
    if first is None or last is None or first > last:
        return []
    days = pd.date_range(first, last, freq="D").date
    daily = daily.reindex(days, fill_value=0.0)
    return [{"date": day.isoformat(), "cost": _money(cost)} for day, cost in daily.items()]


def compute_stats(
    *,
    session: Session,
    settings: Settings,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The stats contract ({totalJobs, completedJobs, failedJobs, totalCost, costByService,
    costByDate}) plus delivered-video cost, failed spend, spend by model and resolution,
    and today's use against the limits.
    """
    import pandas as pd  # lazily: ~1 CPU-s, and only the statistics need it

    start, end = _range(settings, date_from, date_to)
    ledger = ledger_frame(session=session, settings=settings, start=start, end=end)
    jobs = job_frame(session=session, start=start, end=end)

    def jobs_in(*statuses: JobStatus) -> int:
        return int(sum(jobs["jobs"].get(s.value, 0) for s in statuses))

    by_service = (
        ledger.groupby("service")["cost"].sum() if not ledger.empty else pd.Series(dtype=float)
    )
    total_cost = float(ledger["cost"].sum())
    completed = jobs_in(JobStatus.COMPLETED)
    failed_job_spend = sum(
        float(jobs["cost"].get(s.value, 0.0)) for s in (JobStatus.FAILED, JobStatus.CANCELLED)
    )
    return {
        "totalJobs": int(jobs["jobs"].sum()),
        "completedJobs": completed,
        "failedJobs": jobs_in(JobStatus.FAILED),
        "cancelledJobs": jobs_in(JobStatus.CANCELLED),
        "activeJobs": jobs_in(
            JobStatus.PENDING,
            JobStatus.GENERATING_IMAGES,
            JobStatus.GENERATING_VIDEO,
            JobStatus.UPLOADING,
        ),
        "totalCost": _money(total_cost),
        "costByService": {
            "nanoBanana": _money(by_service.get("nano_banana", 0.0)),
            "pikaLabs": _money(by_service.get("pika", 0.0)),
        },
        "costByDate": _cost_by_date(ledger, date_from, date_to),
        "calls": int(ledger["calls"].sum()),
        "failedCalls": int(ledger.loc[~ledger["succeeded"], "calls"].sum()),
        # Billed attempts that failed (the provider charged, nothing usable came back).
        "failedAttemptSpend": _money(ledger.loc[~ledger["succeeded"], "cost"].sum()),
        # Everything spent on jobs that ended without a video (their paid steps included).
        "failedJobSpend": _money(failed_job_spend),
        "costPerDeliveredVideo": _money(total_cost / completed) if completed else None,
        "spendByModel": _grouped(ledger, ["service", "provider", "model"]),
        "spendByResolution": _grouped(ledger, ["service", "resolution"]),
        "range": {
            "from": date_from.isoformat() if date_from else None,
            "to": date_to.isoformat() if date_to else None,
            "timezone": settings.limits_timezone,
        },
        "today": limits.today_usage(session=session, settings=settings, now=now).to_dict(),
    }
