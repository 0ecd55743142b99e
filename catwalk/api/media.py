"""Media URLs other systems can fetch when videos live in local files (STORAGE_BACKEND=local).

A ``file://`` URL means nothing to the shop's other machines, so the API serves the media
folder itself under ``/media/<key>`` (HTTP Range included: players seek, and resume). Like a
bucket, the URLs are public unless ``SIGNED_URLS`` is on; then each carries an expiry and an
HMAC-SHA256 signature (key derived from the API token, which itself never appears) and the
API refuses it after ``SIGNED_URL_TTL_SECONDS``.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse

from catwalk.api.schemas import ErrorBody
from catwalk.clients import factory, signed_media
from catwalk.clients.keys import content_type_for
from catwalk.config import Settings

MEDIA_PREFIX = "/media"


def _signing_key(api_token: str) -> bytes:
    return signed_media.derive_key(api_token.encode(), b"catwalk media urls v1")


def sign(key: str, expires: int, *, api_token: str) -> str:
    return signed_media.signature(_signing_key(api_token), key, str(expires))


def media_url(
    base_url: str, key: str, *, settings: Settings, api_token: str, now: float | None = None
) -> str:
    """The address of ``key`` on this API (signed and expiring when SIGNED_URLS is on)."""
    url = f"{base_url.rstrip('/')}{MEDIA_PREFIX}/{quote(key, safe='/')}"
    if not settings.signed_urls:
        return url
    expires = int(now if now is not None else time.time()) + settings.signed_url_ttl_seconds
    return f"{url}?expires={expires}&sig={sign(key, expires, api_token=api_token)}"


def fetchable_url(request: Request, key: str | None, settings: Settings) -> str | None:
    """What the API hands out for a stored object: the store's own URL unless it is a file."""
    if not key:
        return None
    url = factory.blob_store(settings).url(key)
    if not url.startswith("file://"):
        return url
    return media_url(
        str(request.base_url), key, settings=settings, api_token=request.app.state.api_token
    )


def router() -> APIRouter:
    routes = APIRouter()

    @routes.get(
        f"{MEDIA_PREFIX}/{{key:path}}",
        summary="A stored video or image (local storage), Range requests supported",
        response_class=FileResponse,
        responses={
            206: {"description": "The requested byte range."},
            403: {"description": "Signature missing, wrong or expired (SIGNED_URLS)."},
            404: {"description": "No such file."},
            422: {"model": ErrorBody, "description": "Malformed expires or sig."},
        },
    )
    def media(
        key: str, request: Request, expires: int | None = None, sig: str | None = None
    ) -> FileResponse:
        settings: Settings = request.app.state.settings
        if settings.signed_urls:
            if expires is None or not sig:
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail=signed_media.REQUIRED)
            refused = signed_media.refusal(
                _signing_key(request.app.state.api_token),
                key,
                str(expires),
                expires=expires,
                sig=sig,
            )
            if refused:
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail=refused)
        store = factory.blob_store(settings)
        if getattr(store, "local_path", None) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="media is not stored locally")
        path = signed_media.local_file(store, key)
        if path is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file")
        return FileResponse(path, media_type=content_type_for(path.name.lower()))

    return routes
