"""Delivering completion webhooks (``WEBHOOK_URL``), recorded and retried like the alerts.

Every ending of a job records its event (``job.completed``, ``job.failed``,
``job.cancelled``) in the ending's own transaction (``db.jobs.end_job``), whoever ends it:
the flow, housekeeping, a launch that failed, an admin's cancel. ``catwalk.lifecycle`` then
calls ``deliver_webhook``; ``deliver_pending_webhooks`` (housekeeping) sends whatever is
still undelivered. Each POST of an event, retried with exponential backoff, is counted on
its ``webhook_deliveries`` row with its last error.

Media URLs are filled in when the event is sent, in the form other systems can fetch
(``catwalk.clients.links``): the bucket's, or with local storage the API's ``/media`` URL
at ``API_PUBLIC_URL``; without an address the URLs are null and the storage keys remain.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from sqlalchemy import select

from catwalk.clients import factory, links
from catwalk.clients.webhooks import WebhookSender
from catwalk.config import Settings, get_settings
from catwalk.db import session_scope
from catwalk.db.base import utcnow
from catwalk.db.models import WebhookDelivery
from catwalk.errors import NotificationError

logger = logging.getLogger(__name__)


def _sender(settings: Settings) -> WebhookSender | None:
    if settings.webhook_url is None:
        return None
    if settings.webhook_secret is None:
        logger.warning("WEBHOOK_URL is set but WEBHOOK_SECRET is not: no webhook is sent unsigned")
        return None
    return WebhookSender(settings.webhook_url, settings.webhook_secret)


def render(payload: str, *, settings: Settings) -> bytes:
    """The body to send: the recorded event with fetchable media URLs for its keys."""
    body = json.loads(payload)
    data = body["data"]
    store = factory.blob_store(settings) if data.get("videoKey") else None
    for url_field, key_field in (("videoUrl", "videoKey"), ("thumbnailUrl", "thumbnailKey")):
        key = data.get(key_field)
        data[url_field] = (
            links.fetchable_url(store, key, settings=settings) if store and key else None
        )
    return json.dumps(body, separators=(",", ":")).encode()


def deliver_webhook(
    delivery_id: str,
    *,
    settings: Settings | None = None,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST one event, retrying with backoff up to ``attempts`` (WEBHOOK_ATTEMPTS) times;
    True if delivered."""
    settings = settings or get_settings()
    sender = _sender(settings)
    if sender is None:
        return False
    with session_scope(settings) as session:
        row = session.get(WebhookDelivery, delivery_id)
        if row is None or row.delivered_at is not None:
            return False
        # Rendered once per delivery, so every attempt of it sends the same bytes; a later
        # delivery renders again (a signed URL then starts a fresh expiry).
        body = render(row.payload, settings=settings)
        row.payload = body.decode()
        event = row.event
    for attempt in range(attempts or settings.webhook_attempts):
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
