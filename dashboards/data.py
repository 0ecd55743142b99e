"""What the dashboard shows, read from the database in one place.

Reads are ``st.cache_data`` functions with a short ``ttl`` keyed by the database URL (so two
databases never share a cache); they return frozen dataclasses or DataFrames, never ORM
objects. The few writes the dashboard makes that are not job actions (acknowledging an alert)
sit at the end, and clear the caches they make stale.

Spend and today's use come from ``db/stats.py`` and ``db/limits.py``, so the dashboard, the
HTTP API and ``catwalk stats`` agree to the cent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st
from catwalk.dashboards import media_links
from catwalk.db import alerts as alerts_db
from catwalk.db import limits, queries, session_scope, stats
from catwalk.db.base import utcnow
from catwalk.db.models import Alert, Product, VideoJob
from sqlalchemy import ScalarSelect, Select, and_, func, or_, select

from catwalk import failures
from catwalk.clients import factory, media, signed_media
from catwalk.config import Settings, get_settings
from catwalk.domain import ACTIVE_STATUSES, JobStatus
from catwalk.errors import ProductImageError

PRODUCT_FILTERS = ("All", "Has video", "No video", "Failed", "In progress")
JOB_STATUSES = tuple(s.value for s in JobStatus)
LIVE_TTL = 1  # seconds: the jobs page refreshes every 2 s
LIST_TTL = 5
COST_TTL = 30
HISTORY_TTL = 3600  # past days' aggregates: they cannot change


def settings() -> Settings:
    return get_settings()


def _url() -> str:
    return settings().effective_database_url


def _signed(ref: str) -> str:
    # Links are minted per signed-in session and page run; pages are only reachable signed in.
    state = cast("MutableMapping[str, Any]", st.session_state)
    expires = media_links.link_expiry()
    grant = media_links.session_grant(state, expires)
    origin = media_links.origin_of(st.context.url)
    return media_links.link(origin, ref, grant=grant, expires=expires, settings=settings())


def media_source(key: str | None) -> str | None:
    """Where the browser loads a stored object from: a signed dashboard link for local files,
    the store's own URL (presigned when SIGNED_URLS is on) for S3/R2; None when it is gone."""
    if not key:
        return None
    store = factory.blob_store(settings())
    url = store.url(key)
    if not url.startswith("file://"):
        return url
    local = signed_media.local_file(store, key)
    if local is None:
        return None  # a local file that is gone (deleted by hand): show "not made yet"
    try:
        # A file remade under the same key (a keyframe an admin asked for again) gets a new
        # link, or the browser would keep showing the cached old picture.
        version = f"&v={local.stat().st_mtime_ns}"
    except OSError:
        return None
    return _signed(f"store/{key}") + version


@st.cache_data(ttl=LIST_TTL, show_spinner=False)
def _photo_problem(path: str, mtime_ns: int, size: int) -> str | None:
    # Keyed by the file's mtime and size: a replaced photo is looked at again.
    try:
        media.identify_image(media.read_image_source(path, settings=settings()), source="photo")
    except ProductImageError as exc:
        return exc.user_message.removeprefix("photo ")
    return None


def image_source(ref: str | None, product_id: str) -> str | None:
    """A product photo the browser can load (a signed link, or the photo's own http(s) URL),
    or None when there is none inside MEDIA_IMPORT_ROOTS.

    Raises:
        ProductImageError: the file is there but is not an image catwalk can use.
    """
    if not ref:
        return None
    if ref.startswith(("http://", "https://")):
        return ref
    path = media_links.photo_file(settings(), ref)
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:  # removed since it was found: the card says "No photo"
        return None
    problem = _photo_problem(str(path), stat.st_mtime_ns, stat.st_size)
    if problem:
        raise ProductImageError(problem)
    return _signed(f"photo/{product_id}")


def clear() -> None:
    """Forget the cached reads an action can change (jobs, products, today's totals, alerts).

    Past days' cost aggregates stay cached: no action changes them.
    """
    for cached in (
        _products,
        _jobs,
        _status_counts,
        _job_detail,
        _today_usage,
        _alerts,
        _ledger_today,
    ):
        cached.clear()


# Products ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductRow:
    id: str
    name: str
    image: str | None
    video_key: str | None
    poster_key: str | None
    video_updated_at: dt.datetime | None
    job_id: str | None
    job_status: str | None
    job_progress: int
    job_step: str | None
    job_error: str | None
    active_job_id: str | None


@dataclass(frozen=True, slots=True)
class ProductPage:
    rows: tuple[ProductRow, ...]
    total: int


def _latest_job_id() -> ScalarSelect[str]:
    return (
        select(VideoJob.id)
        .where(VideoJob.product_id == Product.id)
        .order_by(VideoJob.created_at.desc(), VideoJob.id.desc())
        .limit(1)
        .correlate(Product)
        .scalar_subquery()
    )


def _active_job_id() -> ScalarSelect[str]:
    return (
        select(VideoJob.id)
        .where(VideoJob.product_id == Product.id, VideoJob.status.in_(ACTIVE_STATUSES))
        .limit(1)
        .correlate(Product)
        .scalar_subquery()
    )


def _latest_failed_products() -> Select:  # type: ignore[type-arg]
    # Set-based (one pass over the jobs) rather than a lookup per product: filtering 10,000
    # products by their latest job stays one grouped scan.
    latest = (
        select(VideoJob.product_id, func.max(VideoJob.created_at).label("at"))
        .group_by(VideoJob.product_id)
        .subquery()
    )
    return (
        select(VideoJob.product_id)
        .join(
            latest,
            and_(VideoJob.product_id == latest.c.product_id, VideoJob.created_at == latest.c.at),
        )
        .where(VideoJob.status == JobStatus.FAILED)
    )


def _product_filters(stmt: Select, search: str, status: str) -> Select:  # type: ignore[type-arg]
    if search.strip():
        needle = (
            "%" + search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        stmt = stmt.where(
            or_(Product.name.ilike(needle, escape="\\"), Product.id.ilike(needle, escape="\\"))
        )
    if status == "Has video":
        stmt = stmt.where(Product.video_key.is_not(None))
    elif status == "No video":
        stmt = stmt.where(Product.video_key.is_(None))
    elif status == "Failed":
        stmt = stmt.where(Product.id.in_(_latest_failed_products()))
    elif status == "In progress":
        stmt = stmt.where(
            select(VideoJob.id)
            .where(VideoJob.product_id == Product.id, VideoJob.status.in_(ACTIVE_STATUSES))
            .correlate(Product)
            .exists()
        )
    return stmt


@st.cache_data(ttl=LIST_TTL, show_spinner=False)
def _products(url: str, search: str, status: str, offset: int, limit: int) -> ProductPage:
    with session_scope(settings()) as session:
        matching = _product_filters(select(Product.id), search, status)
        total = session.scalar(select(func.count()).select_from(matching.subquery())) or 0
        # The page first, then the latest and the active job of just those products.
        page_ids = session.scalars(
            matching.order_by(Product.name, Product.id).offset(offset).limit(limit)
        ).all()
        if not page_ids:
            return ProductPage(rows=(), total=int(total))
        found = session.execute(
            select(Product, _latest_job_id(), _active_job_id()).where(Product.id.in_(page_ids))
        ).all()
        latest_ids = [latest for _, latest, _ in found if latest]
        jobs = {
            j.id: j for j in session.scalars(select(VideoJob).where(VideoJob.id.in_(latest_ids)))
        }
        by_id = {
            product.id: (product, jobs.get(latest), active) for product, latest, active in found
        }
        rows = []
        for product_id in page_ids:
            product, job, active_id = by_id[product_id]
            rows.append(
                ProductRow(
                    id=product.id,
                    name=product.name,
                    image=product.images[0] if product.images else None,
                    video_key=product.video_key,
                    poster_key=product.poster_key,
                    video_updated_at=product.video_updated_at,
                    job_id=job.id if job else None,
                    job_status=job.status.value if job else None,
                    job_progress=job.progress if job else 0,
                    job_step=(job.wait_reason or job.current_step) if job else None,
                    job_error=_plain_error(job) if job else None,
                    active_job_id=active_id,
                )
            )
    return ProductPage(rows=tuple(rows), total=int(total))


def products(
    search: str = "", status: str = "All", *, offset: int = 0, limit: int = 24
) -> ProductPage:
    """One page of products matching the search and the filter, with their latest job."""
    return _products(_url(), search, status, offset, limit)


# Jobs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRow:
    id: str
    product_id: str
    product_name: str
    status: str
    progress: int
    step: str
    wait_reason: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    elapsed_seconds: float
    remaining_seconds: int | None
    total_cost: Decimal
    flow_run_id: str | None
    error: str | None
    retry_count: int
    cancel_requested: bool
    failure_kind: str | None = None
    typical_seconds: int | None = None  # how long jobs here usually take, click to done

    @property
    def longer_than_usual(self) -> bool:
        """Past the typical length: the estimate may rise from here, and the page says why."""
        return (
            self.is_active
            and self.typical_seconds is not None
            and self.elapsed_seconds >= self.typical_seconds
        )

    @property
    def is_active(self) -> bool:
        return JobStatus(self.status).is_active

    @property
    def explanation(self) -> failures.Explanation | None:
        """Why it failed (or was cancelled) in plain words, and the actions that help."""
        return failures.explain(JobStatus(self.status), self.failure_kind, self.error)


def _plain_error(job: VideoJob) -> str | None:
    """A failed job's reason in plain words (the raw text is on its job page)."""
    said = failures.explain(job.status, job.failure_kind, job.error_message)
    return said.reason if said is not None and said.kind != "unknown" else job.error_message


def doing(job: JobRow) -> str:
    """What the job is doing now, named for what happens: a PENDING job with no reason of
    its own is a process starting (embedded) or a run waiting for a worker (deployments)."""
    if job.wait_reason:
        return job.wait_reason
    if job.status == JobStatus.PENDING:
        return "starting" if settings().launcher == "local" else "waiting for a worker"
    return job.step


def _job_row(
    job: VideoJob, product_name: str, now: dt.datetime, typical: int | None = None
) -> JobRow:
    # From the admin's click, never from the run's start: the timer must not jump back
    # when the run starts, and "took" must count the wait for a process or a worker too.
    start = job.requested_at or job.created_at
    end = job.completed_at or now
    return JobRow(
        id=job.id,
        product_id=job.product_id,
        product_name=product_name,
        status=job.status.value,
        progress=job.progress,
        step=job.current_step,
        wait_reason=job.wait_reason,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        elapsed_seconds=max(0.0, (end - start).total_seconds()),
        remaining_seconds=queries.estimate_remaining_seconds(job, typical_seconds=typical),
        typical_seconds=typical,
        total_cost=job.total_cost,
        flow_run_id=job.flow_run_id,
        error=job.error_message,
        retry_count=job.retry_count,
        cancel_requested=job.cancel_requested,
        failure_kind=job.failure_kind,
    )


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def _jobs(url: str, statuses: tuple[str, ...], search: str, limit: int) -> tuple[JobRow, ...]:
    now = utcnow()
    stmt = (
        select(VideoJob, Product.name)
        .join(Product, Product.id == VideoJob.product_id)
        .order_by(VideoJob.created_at.desc(), VideoJob.id)
        .limit(limit)
    )
    if statuses:
        stmt = stmt.where(VideoJob.status.in_([JobStatus(s) for s in statuses]))
    if search.strip():
        needle = f"%{search.strip()}%"
        stmt = stmt.where(
            or_(
                Product.name.ilike(needle),
                VideoJob.product_id.ilike(needle),
                VideoJob.id.ilike(needle),
            )
        )
    with session_scope(settings()) as session:
        typical = queries.typical_job_seconds(session)
        return tuple(_job_row(job, name, now, typical) for job, name in session.execute(stmt))


def jobs(
    statuses: tuple[str, ...] = (), search: str = "", *, limit: int = 100
) -> tuple[JobRow, ...]:
    """The newest jobs (optionally of some statuses, or matching a product/job search)."""
    return _jobs(_url(), tuple(sorted(statuses)), search, limit)


def active_jobs(*, limit: int = 200) -> tuple[JobRow, ...]:
    """Every job in flight, newest first (bounded: a huge batch shows its newest ones)."""
    return _jobs(_url(), tuple(sorted(s.value for s in ACTIVE_STATUSES)), "", limit)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def _status_counts(url: str, since: dt.datetime) -> dict[str, int]:
    with session_scope(settings()) as session:
        active = dict(
            session.execute(
                select(VideoJob.status, func.count())
                .where(VideoJob.status.in_(ACTIVE_STATUSES))
                .group_by(VideoJob.status)
            ).all()
        )
        recent = dict(
            session.execute(
                select(VideoJob.status, func.count())
                .where(VideoJob.created_at >= since, VideoJob.status.not_in(ACTIVE_STATUSES))
                .group_by(VideoJob.status)
            ).all()
        )
    return {
        status.value: int(active.get(status, 0) + recent.get(status, 0)) for status in JobStatus
    }


def status_counts() -> dict[str, int]:
    """Jobs in flight by status, plus jobs finished today (limits' time zone) by status."""
    start, _ = day_bounds(today())
    return _status_counts(_url(), start)


@dataclass(frozen=True, slots=True)
class TimelineRow:
    at: dt.datetime
    step: str
    attempt: int
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class ChargeRow:
    at: dt.datetime
    service: str
    provider: str
    model: str
    units: Decimal
    unit: str
    amount: Decimal
    attempt: int
    succeeded: bool
    request_id: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class JobDetail:
    job: JobRow
    options: dict[str, str]
    image_keys: dict[str, str]
    video_key: str | None
    poster_key: str | None
    video_request_id: str | None
    video_duration_seconds: float | None
    image_provider: str | None
    video_provider: str | None
    events: tuple[TimelineRow, ...]
    charges: tuple[ChargeRow, ...]
    # The keyframe check (db.queries.quality_summary), None when it never ran.
    quality: dict[str, Any] | None = None


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def _job_detail(url: str, job_id: str) -> JobDetail | None:
    with session_scope(settings()) as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None:
            return None
        row = _job_row(job, job.product.name, utcnow(), queries.typical_job_seconds(session))
        events = tuple(
            TimelineRow(e.at, e.step, e.attempt, e.kind, e.message)
            for e in queries.events_for_job(session=session, job_id=job_id)
        )
        charges = tuple(
            ChargeRow(
                c.created_at,
                c.service,
                c.provider,
                c.model,
                c.units,
                c.unit,
                c.amount,
                c.attempt,
                c.succeeded,
                c.provider_request_id,
                c.note,
            )
            for c in queries.ledger_for_job(session=session, job_id=job_id)
        )
        return JobDetail(
            job=row,
            options={str(k): str(v) for k, v in job.options.items()},
            image_keys={str(k): str(v) for k, v in job.image_keys.items()},
            video_key=job.video_key,
            poster_key=job.poster_key,
            video_request_id=job.video_request_id,
            video_duration_seconds=job.video_duration_seconds,
            image_provider=job.image_provider,
            video_provider=job.video_provider,
            events=events,
            charges=charges,
            quality=queries.quality_summary(job.quality),
        )


def job_detail(job_id: str) -> JobDetail | None:
    return _job_detail(_url(), job_id)


def resolve_job_id(given: str) -> str:
    """The full id of a job given by id or unique prefix (6+ characters), as the CLI takes it.

    Raises InputError (its message is for the user) when none or several jobs match.
    """
    with session_scope(settings()) as session:
        return queries.resolve_job_id(session=session, given=given)


def prefect_run_url(flow_run_id: str | None) -> str | None:
    base = settings().prefect_ui_url
    if not base or not flow_run_id:
        return None
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}"


# Costs -------------------------------------------------------------------------------------
# Spend comes from db/stats.py (the ledger's hourly rollup, days in LIMITS_TIMEZONE) and today's
# use from db/limits.py, the same numbers the API and `catwalk stats` show. Past days cannot
# change (ledger rows are written "now"), so their aggregates are cached for an hour under a
# key holding the dates; only today's are read again often.


def zone() -> ZoneInfo:
    return limits.limits_zone(settings())


def today() -> dt.date:
    return limits.limits_day(settings())


def day_bounds(day: dt.date, days: int = 1) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where ``day`` (in the limits' time zone) starts and ``days`` later ends."""
    start, _ = limits.day_bounds(settings(), day)
    _, end = limits.day_bounds(settings(), day + dt.timedelta(days=days - 1))
    return start, end


def _ledger(start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    with session_scope(settings()) as session:
        return stats.ledger_frame(session=session, settings=settings(), start=start, end=end)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def _ledger_history(url: str, tz: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    return _ledger(start, end)


@st.cache_data(ttl=COST_TTL, show_spinner=False)
def _ledger_today(url: str, tz: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    return _ledger(start, end)


def _ledger_days(days: int) -> pd.DataFrame:
    """The ledger frame (per day, service, provider, model, outcome) of the last ``days`` days."""
    url, tz, last = _url(), settings().limits_timezone, today()
    today_start, today_end = day_bounds(last)
    parts = [_ledger_today(url, tz, today_start, today_end)]
    if days > 1:
        first_start, _ = day_bounds(last - dt.timedelta(days=days - 1))
        parts.append(_ledger_history(url, tz, first_start, today_start))
    filled = [part for part in parts if not part.empty]
    return pd.concat(filled, ignore_index=True) if filled else parts[0]


def cost_by_day(days: int = 30) -> pd.DataFrame:
    """Spend per day (limits' time zone) and service over the last ``days`` days, zeros included."""
    ledger = _ledger_days(days)
    first = today() - dt.timedelta(days=days - 1)
    frame = ledger.assign(day=pd.to_datetime(ledger["day"])) if not ledger.empty else ledger
    pivot = frame.pivot_table(
        index="day", columns="service", values="cost", aggfunc="sum", fill_value=0.0
    )
    every_day = pd.date_range(pd.Timestamp(first), periods=days, freq="D", name="day")
    # Both services always get a column, so an idle period still draws (as zeros).
    services = sorted(set(pivot.columns) | {"nano_banana", "pika"})
    return pivot.reindex(index=every_day, columns=services, fill_value=0.0)


def cost_breakdown(days: int = 30) -> pd.DataFrame:
    """Calls and spend by service, provider and model over the last ``days`` days."""
    ledger = _ledger_days(days)
    if ledger.empty:
        return pd.DataFrame(columns=["service", "provider", "model", "calls", "amount"])
    frame = ledger.groupby(["service", "provider", "model"], as_index=False)[
        ["calls", "cost"]
    ].sum()
    frame = frame.rename(columns={"cost": "amount"})
    return frame.sort_values("amount", ascending=False, ignore_index=True)


def _delivered(start: dt.datetime, end: dt.datetime) -> int:
    with session_scope(settings()) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(VideoJob)
                .where(
                    VideoJob.status == JobStatus.COMPLETED,
                    VideoJob.completed_at >= start,
                    VideoJob.completed_at < end,
                )
            )
            or 0
        )


@st.cache_data(ttl=LIST_TTL, show_spinner=False)
def _today_usage(url: str, tz: str, day: dt.date) -> tuple[limits.TodayUsage, int]:
    s = settings()
    with session_scope(s) as session:
        usage = limits.today_usage(session=session, settings=s)
    return usage, _delivered(*day_bounds(day))


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def _delivered_history(url: str, start: dt.datetime, end: dt.datetime) -> int:
    return _delivered(start, end)


@dataclass(frozen=True, slots=True)
class Spend:
    day: dt.date
    timezone: str
    spend: Decimal
    generations: int
    generation_limit: int
    budget: Decimal | None
    period_spend: Decimal
    period_videos: int

    @property
    def cost_per_video(self) -> Decimal | None:
        return (self.period_spend / self.period_videos) if self.period_videos else None


def spend(days: int = 30) -> Spend:
    """Today's spend and generations against the limits, and the period's cost per video.

    With ``days=1`` only today is read (the sidebar on every page).
    """
    s, url, day = settings(), _url(), today()
    usage, delivered = _today_usage(url, s.limits_timezone, day)
    period_spend, period_videos = usage.spend, delivered
    if days > 1:
        today_start, _ = day_bounds(day)
        first, _ = day_bounds(day - dt.timedelta(days=days - 1))
        history = _ledger_history(url, s.limits_timezone, first, today_start)
        period_spend += (
            Decimal(str(round(float(history["cost"].sum()), 6)))
            if not history.empty
            else Decimal(0)
        )
        period_videos += _delivered_history(url, first, today_start)
    return Spend(
        day=usage.day,
        timezone=usage.timezone,
        spend=usage.spend,
        generations=usage.generations,
        generation_limit=usage.generation_limit,
        budget=usage.budget,
        period_spend=period_spend,
        period_videos=period_videos,
    )


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: str
    kind: str
    message: str
    job_id: str | None
    created_at: dt.datetime
    acknowledged_at: dt.datetime | None
    delivery_error: str | None


@st.cache_data(ttl=LIST_TTL, show_spinner=False)
def _alerts(url: str, limit: int) -> tuple[AlertRow, ...]:
    with session_scope(settings()) as session:
        rows = session.scalars(
            select(Alert)
            .order_by(Alert.acknowledged_at.is_not(None), Alert.created_at.desc())
            .limit(limit)
        ).all()
        return tuple(
            AlertRow(
                a.id, a.kind, a.message, a.job_id, a.created_at, a.acknowledged_at, a.delivery_error
            )
            for a in rows
        )


def alerts(*, limit: int = 50) -> tuple[AlertRow, ...]:
    """Unacknowledged alerts first, then the newest acknowledged ones."""
    return _alerts(_url(), limit)


def acknowledge_alert(alert_id: str) -> None:
    """Mark an alert as seen (it stays in the list, greyed)."""
    with session_scope(settings()) as session:
        alerts_db.acknowledge_alert(session=session, alert_id=alert_id)
    clear()


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def _waiting_for_review(url: str) -> int:
    from catwalk import review

    return review.count_waiting(settings=settings())


def waiting_for_review() -> int:
    """How many jobs wait for an admin's decision (the navigation shows it)."""
    return _waiting_for_review(_url())
