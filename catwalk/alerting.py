"""Recording and delivering alerts: spend thresholds, jobs that failed for good (REQ-009).

Plain functions, not Prefect tasks: they run after a paid step's transaction commits, from
``fail_job``, and from housekeeping (``deliver_pending_alerts`` retries failed deliveries).
An alert problem never fails the job that raised it.
"""

from __future__ import annotations

import logging

from catwalk.clients import factory
from catwalk.config import Settings, get_settings
from catwalk.db import alerts, session_scope
from catwalk.errors import NotificationError

logger = logging.getLogger(__name__)


def deliver_alert(alert_id: str, *, settings: Settings | None = None) -> bool:
    """Post one alert unless it is delivered or another sender holds it; True if posted now."""
    settings = settings or get_settings()
    notifier = factory.notifier(settings)
    if notifier is None:
        return False
    with session_scope(settings) as session:
        alert = alerts.claim_for_delivery(session=session, alert_id=alert_id)
        if alert is None:
            return False
        text = alert.message
    error: str | None = None
    try:
        notifier.send(text)
    except NotificationError as exc:
        error = exc.user_message
        logger.warning("alert %s not delivered: %s", alert_id, error)
    with session_scope(settings) as session:
        alerts.record_delivery(session=session, alert_id=alert_id, error=error)
    return error is None


def deliver_pending_alerts(*, settings: Settings | None = None, limit: int = 50) -> tuple[int, int]:
    """Deliver every alert not delivered yet (housekeeping); returns (delivered, not delivered)."""
    settings = settings or get_settings()
    if factory.notifier(settings) is None:
        return 0, 0
    with session_scope(settings) as session:
        todo = alerts.undelivered_alert_ids(session=session, limit=limit)
    delivered = sum(deliver_alert(alert_id, settings=settings) for alert_id in todo)
    return delivered, len(todo) - delivered


def check_spend_alerts(*, settings: Settings | None = None) -> list[str]:
    """Record (once) and deliver the spend alerts today's ledger calls for."""
    settings = settings or get_settings()
    with session_scope(settings) as session:
        recorded = alerts.record_spend_alerts(session=session, settings=settings)
    for alert_id in recorded:
        deliver_alert(alert_id, settings=settings)
    return recorded


def alert_job_failed(
    *, job_id: str, product_id: str, message: str, settings: Settings | None = None
) -> str | None:
    """Record (once) and deliver "job failed for good"; returns the alert id if new."""
    settings = settings or get_settings()
    with session_scope(settings) as session:
        alert_id = alerts.record_alert(
            session=session,
            kind="job_failed",
            dedupe_key=f"job_failed:{job_id}",
            message=f"video job {job_id} for product {product_id} failed: {message}",
            job_id=job_id,
        )
    if alert_id:
        deliver_alert(alert_id, settings=settings)
    return alert_id
