"""Alerts admins must see: recorded once per dedupe key, listed until acknowledged, and
claimed by one sender at a time for delivery to the webhook.

"Once" holds across workers, retries and replicas because recording is an
``INSERT ... ON CONFLICT DO NOTHING`` on the unique ``dedupe_key``: the database, not the
caller, decides who recorded it. Must not import clients, tasks, flows or dashboards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from catwalk.db import limits, queries
from catwalk.db.base import new_id, utcnow
from catwalk.db.models import Alert
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from catwalk.config import Settings

# A sender that claimed an alert and then died leaves the claim behind; after this long
# another sender may try again.
CLAIM_TIMEOUT = dt.timedelta(seconds=60)


def record_alert(
    *, session: Session, kind: str, dedupe_key: str, message: str, job_id: str | None = None
) -> str | None:
    """Record the alert unless its key already exists; returns the new alert's id, or None."""
    alert_id = new_id()
    inserted = queries.insert_or_ignore(
        session=session,
        model=Alert,
        values={
            "id": alert_id,
            "kind": kind,
            "dedupe_key": dedupe_key,
            "message": message,
            "job_id": job_id,
            "created_at": utcnow(),
            "delivery_attempts": 0,
        },
        key="dedupe_key",
    )
    return alert_id if inserted else None


def _money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def record_spend_alerts(
    *, session: Session, settings: Settings, now: dt.datetime | None = None
) -> list[str]:
    """Record the daily and monthly spend alerts whose threshold today's spend has passed.

    Returns the ids of alerts this call recorded (none when another caller was first).
    """
    now = now or utcnow()
    zone = limits.limits_zone(settings)
    day = limits.limits_day(settings, now)
    recorded: list[str] = []
    start, end = limits.day_bounds(settings, day)
    daily = limits.spend_between(session=session, start=start, end=end)
    if daily > settings.cost_alert_threshold:
        alert_id = record_alert(
            session=session,
            kind="daily_cost",
            dedupe_key=f"daily_cost:{day.isoformat()}",
            message=(
                f"AI spend on {day.isoformat()} ({settings.limits_timezone}) passed "
                f"{_money(settings.cost_alert_threshold)}: {_money(daily)} so far"
            ),
        )
        recorded += [alert_id] if alert_id else []
    monthly_threshold = settings.monthly_cost_alert_threshold
    if monthly_threshold is not None:
        first = day.replace(day=1)
        month_start = dt.datetime.combine(first, dt.time(), tzinfo=zone).astimezone(dt.UTC)
        monthly = limits.spend_between(session=session, start=month_start, end=end)
        if monthly > monthly_threshold:
            alert_id = record_alert(
                session=session,
                kind="monthly_cost",
                dedupe_key=f"monthly_cost:{first:%Y-%m}",
                message=(
                    f"AI spend in {first:%B %Y} ({settings.limits_timezone}) passed "
                    f"{_money(monthly_threshold)}: {_money(monthly)} so far"
                ),
            )
            recorded += [alert_id] if alert_id else []
    return recorded


def unacknowledged_alerts(*, session: Session, limit: int = 100) -> Sequence[Alert]:
    """Alerts still waiting for an admin, newest first (what the dashboard shows)."""
    return session.scalars(
        select(Alert)
        .where(Alert.acknowledged_at.is_(None))
        .order_by(Alert.created_at.desc(), Alert.id)
        .limit(limit)
    ).all()


def acknowledge_alert(*, session: Session, alert_id: str) -> bool:
    """Mark an alert seen; False when it does not exist or was already acknowledged."""
    result = session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.acknowledged_at.is_(None))
        .values(acknowledged_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def undelivered_alert_ids(*, session: Session, limit: int = 50) -> list[str]:
    return list(
        session.scalars(
            select(Alert.id)
            .where(Alert.delivered_at.is_(None))
            .order_by(Alert.created_at, Alert.id)
            .limit(limit)
        )
    )


def claim_for_delivery(
    *, session: Session, alert_id: str, now: dt.datetime | None = None
) -> Alert | None:
    """Take the right to post this alert (one sender at a time); None if someone else has it."""
    now = now or utcnow()
    claimed = session.execute(
        update(Alert)
        .where(
            Alert.id == alert_id,
            Alert.delivered_at.is_(None),
            or_(
                Alert.delivery_claimed_at.is_(None), Alert.delivery_claimed_at < now - CLAIM_TIMEOUT
            ),
        )
        .values(delivery_claimed_at=now, delivery_attempts=Alert.delivery_attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        return None
    return session.get(Alert, alert_id, populate_existing=True)


def record_delivery(*, session: Session, alert_id: str, error: str | None) -> None:
    """Record a delivery attempt's outcome and release the claim."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return
    alert.delivery_claimed_at = None
    alert.delivery_error = error
    if error is None:
        alert.delivered_at = utcnow()
