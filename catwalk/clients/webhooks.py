"""Signed completion webhooks for the shop's systems (``job.completed`` / ``job.failed``).

Each POST carries the JSON body and ``X-Catwalk-Signature: t=<unix seconds>,v1=<hex>``, where
``v1`` is HMAC-SHA256 of ``"<t>.<body>"`` under ``WEBHOOK_SECRET``. A receiver checks it with
``verify_signature``: the timestamp is signed, so a captured request replayed later than the
tolerance (5 minutes) is refused, and the body's ``id`` (also ``X-Catwalk-Event-Id``) lets it
drop a repeat inside that window, which retries after an error do send.

The URL may hold a credential: it stays ``SecretStr`` and never reaches a log or an error.
Never imports Prefect, tasks, flows or db.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import httpx
from pydantic import SecretStr

from catwalk.errors import NotificationError

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Catwalk-Signature"
EVENT_ID_HEADER = "X-Catwalk-Event-Id"
TOLERANCE_SECONDS = 300


def signature(secret: str, body: bytes, *, timestamp: int) -> str:
    """The ``X-Catwalk-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and is not older than ``tolerance``."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp=timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


class WebhookSender:
    """One signed POST per call; a failure raises ``NotificationError`` (URL never quoted)."""

    def __init__(
        self,
        url: SecretStr,
        secret: SecretStr,
        *,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout_seconds
        self._transport = transport

    def send(self, body: bytes, *, event_id: str, event: str) -> int:
        timestamp = int(time.time())
        request = httpx.Request(
            "POST",
            self._url.get_secret_value(),
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(
                    self._secret.get_secret_value(), body, timestamp=timestamp
                ),
                EVENT_ID_HEADER: event_id,
                "X-Catwalk-Event": event,
            },
        )
        request.extensions["timeout"] = httpx.Timeout(self._timeout).as_dict()
        # Straight to the transport, as the alert notifier does: httpx.Client logs URLs.
        transport = self._transport or httpx.HTTPTransport()
        try:
            with transport:
                response = transport.handle_request(request)
                response.read()
        except httpx.HTTPError as exc:
            raise NotificationError(f"webhook unreachable ({type(exc).__name__})") from None
        if response.status_code >= 300:
            raise NotificationError(f"webhook answered HTTP {response.status_code}")
        logger.info("webhook %s %s delivered (HTTP %s)", event, event_id, response.status_code)
        return response.status_code
