"""Small helpers the HTTP provider clients share: retry hints, secret scrubbing, error text.

No Prefect, tasks, flows or db here (clients layer).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from typing import Any

import httpx

from catwalk.domain import Usage
from catwalk.errors import PermanentProviderError, ProviderError, TransientProviderError
from catwalk.scrub import register_secret, scrub, scrub_and_cut

# google.rpc.RetryInfo.retryDelay is a protobuf Duration in JSON: "28s", "1.5s", "0.250s".
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_MAX_TEXT = 300


def parse_duration(value: object) -> float | None:
    """Seconds of a protobuf JSON Duration ("28s"), or None when it is not one."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value)
    return float(match.group(1)) if match else None


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def short(text: object, limit: int = _MAX_TEXT) -> str:
    """One line of provider text, scrubbed of secrets and *then* cut to a readable length.

    In that order: a key straddling the cut would otherwise survive as a prefix.
    """
    return scrub_and_cut(text, limit)


class Scrubber:
    """Removes a secret from any text before it reaches an error message or a log line.

    Providers are not supposed to echo keys back, but an error body that quotes the request
    would; scrubbing at the edge keeps the guarantee independent of what they send.
    """

    def __init__(self, *secrets: str) -> None:
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)
        # Known process-wide too, so logs and job rows written elsewhere are scrubbed of it.
        register_secret(*self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return scrub(text)


def transport_error(exc: httpx.TransportError, *, provider: str, what: str) -> ProviderError:
    """Timeouts and connection failures: transient, described without the URL's query."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not be reached"
    detail = type(exc).__name__
    return TransientProviderError(f"{what} {kind} ({detail})", provider=provider)


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def status_error(
    status: int,
    message: str,
    *,
    provider: str,
    retry_after: float | None = None,
    request_id: str | None = None,
    usage: Usage | None = None,
) -> ProviderError:
    """The error class an HTTP status deserves: 408/409/429/5xx transient, other 4xx permanent."""
    cls: type[ProviderError] = (
        TransientProviderError
        if status in (408, 409, 429) or status >= 500
        else PermanentProviderError
    )
    return cls(
        message,
        provider=provider,
        status_code=status,
        retry_after_seconds=retry_after,
        request_id=request_id,
        usage=usage,
    )
