"""Media URLs other systems can fetch, in every storage mode.

A bucket's URLs (presigned when ``SIGNED_URLS`` is on) are fetchable as they are. A local
file's ``file://`` URL means nothing to another machine, so it becomes the HTTP API's
``/media/<key>`` address, signed with an expiry when ``SIGNED_URLS`` is on (HMAC-SHA256 with
a key derived from the API token, which itself never appears). The API builds these from
the request's host unless ``API_PUBLIC_URL`` is set; code outside a request (the webhook
sender in the flow) has only ``API_PUBLIC_URL``, and without it gets no URL: never a path
on the server's disk.

Never imports Prefect, tasks, flows, db or the API.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from catwalk.clients import signed_media
from catwalk.clients.base import BlobStore
from catwalk.config import Settings

MEDIA_PREFIX = "/media"


def signing_key(api_token: str) -> bytes:
    # A key of its own, so a leaked media URL says nothing about the bearer token.
    return signed_media.derive_key(api_token.encode(), b"catwalk media urls v1")


def sign(key: str, expires: int, *, api_token: str) -> str:
    return signed_media.signature(signing_key(api_token), key, str(expires))


def media_url(
    base_url: str, key: str, *, settings: Settings, api_token: str, now: float | None = None
) -> str:
    """The address of ``key`` on the API at ``base_url`` (signed and expiring when
    SIGNED_URLS is on)."""
    url = f"{base_url.rstrip('/')}{MEDIA_PREFIX}/{quote(key, safe='/')}"
    if not settings.signed_urls:
        return url
    expires = int(now if now is not None else time.time()) + settings.signed_url_ttl_seconds
    return f"{url}?expires={expires}&sig={sign(key, expires, api_token=api_token)}"


def fetchable_url(
    store: BlobStore,
    key: str | None,
    *,
    settings: Settings,
    base_url: str | None = None,
    api_token: str | None = None,
) -> str | None:
    """A URL another machine can fetch ``key`` from, or None when there is none to give.

    ``base_url`` and ``api_token`` default to ``API_PUBLIC_URL`` and ``CATWALK_API_TOKEN``.
    None for a local file when no API address is known, or when URLs must be signed and no
    token is configured (an embedded ``catwalk api`` makes its token per run).
    """
    if not key:
        return None
    url = store.url(key)
    if not url.startswith("file://"):
        return url
    base = settings.api_public_url or base_url
    if api_token is None and settings.api_token is not None:
        api_token = settings.api_token.get_secret_value()
    if base is None or (settings.signed_urls and not api_token):
        return None
    return media_url(base, key, settings=settings, api_token=api_token or "")
