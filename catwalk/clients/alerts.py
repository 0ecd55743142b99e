"""Posts alerts to a Slack-compatible incoming webhook (``{"text": ...}``).

The webhook URL is a secret (it is the credential): it is held as ``SecretStr`` and never
appears in a log line or an error message. Never imports Prefect, tasks, flows or db.
"""

from __future__ import annotations

import logging

import httpx
from pydantic import SecretStr

from catwalk.errors import NotificationError

logger = logging.getLogger(__name__)


class WebhookNotifier:
    """One POST per alert; failures raise ``NotificationError`` for the caller to record."""

    name = "webhook"

    def __init__(
        self,
        url: SecretStr,
        *,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout_seconds
        self._transport = transport

    def send(self, text: str) -> None:
        request = httpx.Request("POST", self._url.get_secret_value(), json={"text": text})
        request.extensions["timeout"] = httpx.Timeout(self._timeout).as_dict()
        # Straight to the transport, not through httpx.Client: the client logs every
        # request's full URL at INFO, and for a webhook the URL is the secret.
        transport = self._transport or httpx.HTTPTransport()
        try:
            with transport:
                response = transport.handle_request(request)
                response.read()
        except httpx.HTTPError as exc:
            # httpx's own messages can quote the URL; say what happened without it.
            raise NotificationError(f"alert webhook unreachable ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise NotificationError(f"alert webhook answered HTTP {response.status_code}")
        logger.info("alert delivered to the webhook (HTTP %s)", response.status_code)
