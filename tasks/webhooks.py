"""Recording and delivering completion webhooks (``WEBHOOK_URL``), like the alerts are.

Plain functions, not Prefect tasks: ``report_job`` calls them when a job ends, and
``deliver_pending_webhooks`` retries what was not delivered (for housekeeping). Each event is
a ``webhook_deliveries`` row (recorded once per job ending, whoever reports it); every POST
of it, retried with exponential backoff, is counted there with its last error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from catwalk.db import queries, session_scope
from catwalk.db.base import new_id, utcnow
from catwalk.db.models import WebhookDelivery
from sqlalchemy import select

from catwalk.clients import factory
from catwalk.clients.webhooks import WebhookSender
from catwalk.config import Settings, get_settings
from catwalk.domain import JobStatus
from catwalk.errors import NotificationError

logger = logging.getLogger(__name__)

EVENTS = {JobStatus.COMPLETED: "job.completed", JobStatus.FAILED: "job.failed"}


def _sender(settings: Settings) -> WebhookSender | None:
    if settings.webhook_url is None:
        return None
    if settings.webhook_secret is None:
        logger.warning("WEBHOOK_URL is set but WEBHOOK_SECRET is not: no webhook is sent unsigned")
        return None
    return WebhookSender(settings.webhook_url, settings.webhook_secret)


def record_job_event(job_id: str, *, settings: Settings | None = None) -> str | None:
    """Record the event of a job that ended (once per ending); returns its id if new."""
    settings = settings or get_settings()
    if _sender(settings) is None:
        return None
    store = factory.blob_store(settings)
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None or job.status not in EVENTS:
            return None
        event = EVENTS[job.status]
        ended = (job.completed_at or job.updated_at).isoformat()
        dedupe_key = f"{event}:{job_id}:{ended}"
        if session.scalar(
            select(WebhookDelivery.id).where(WebhookDelivery.dedupe_key == dedupe_key)
        ):
            return None
        delivery_id = new_id()
        video_url = store.url(job.video_key) if job.video_key and event == "job.completed" else None
        body = {
            "id": delivery_id,
            "type": event,
            "createdAt": utcnow().isoformat(),
            "data": {
                "jobId": job.id,
                "productId": job.product_id,
                "status": job.status.value,
                "videoUrl": video_url,
                "error": job.error_message,
                "cost": {"total": float(job.total_cost)},
            },
        }
        session.add(
            WebhookDelivery(
                id=delivery_id,
                event=event,
                job_id=job_id,
                dedupe_key=dedupe_key,
                payload=json.dumps(body, separators=(",", ":")),
            )
        )
    return delivery_id


def deliver_webhook(
    delivery_id: str,
    *,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST one event, retrying with backoff up to WEBHOOK_ATTEMPTS times; True if delivered."""
    settings = settings or get_settings()
    sender = _sender(settings)
    if sender is None:
        return False
    with session_scope(settings) as session:
        row = session.get(WebhookDelivery, delivery_id)
        if row is None or row.delivered_at is not None:
            return False
        body, event = row.payload.encode(), row.event
    for attempt in range(settings.webhook_attempts):
        if attempt:
            sleep(settings.retry_delay_seconds * 2 ** (attempt - 1))
        error: str | None = None
        try:
            sender.send(body, event_id=delivery_id, event=event)
        except NotificationError as exc:
            error = exc.user_message
        with session_scope(settings) as session:
            row = session.get(WebhookDelivery, delivery_id)
            assert row is not None
            row.delivery_attempts += 1
            row.delivery_error = error
            if error is None:
                row.delivered_at = utcnow()
                return True
        logger.warning("webhook %s attempt %d not delivered: %s", delivery_id, attempt + 1, error)
    return False


def notify_job_ended(job_id: str, *, settings: Settings | None = None) -> bool:
    """Record and deliver the job's completion event (nothing when WEBHOOK_URL is unset)."""
    delivery_id = record_job_event(job_id, settings=settings)
    if not delivery_id:
        return False
    return deliver_webhook(delivery_id, settings=settings)


def deliver_pending_webhooks(*, settings: Settings | None = None, limit: int = 50) -> int:
    """Try again every event not delivered yet; returns how many went through."""
    settings = settings or get_settings()
    if _sender(settings) is None:
        return 0
    with session_scope(settings) as session:
        todo = list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.delivered_at.is_(None))
                .order_by(WebhookDelivery.created_at)
                .limit(limit)
            )
        )
    return sum(deliver_webhook(d, settings=settings) for d in todo)
