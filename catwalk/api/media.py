"""Media URLs other systems can fetch when videos live in local files (STORAGE_BACKEND=local).

A ``file://`` URL means nothing to the shop's other machines, so the API serves the media
folder itself under ``/media/<key>`` (HTTP Range included: players seek, and resume). Like a
bucket, the URLs are public unless ``SIGNED_URLS`` is on; then each carries an expiry and an
HMAC-SHA256 signature (key derived from the API token, which itself never appears) and the
API refuses it after ``SIGNED_URL_TTL_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse

from catwalk.api.schemas import ErrorBody
from catwalk.clients import factory
from catwalk.config import Settings
from catwalk.errors import StorageError

MEDIA_PREFIX = "/media"
_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


def _signing_key(api_token: str) -> bytes:
    # A key of its own, so a leaked media URL says nothing about the bearer token.
    return hmac.new(api_token.encode(), b"catwalk media urls v1", hashlib.sha256).digest()


def sign(key: str, expires: int, *, api_token: str) -> str:
    message = f"{key}\n{expires}".encode()
    return hmac.new(_signing_key(api_token), message, hashlib.sha256).hexdigest()


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
            if expires is None or sig is None:
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail="signed URL required")
            good = sign(key, expires, api_token=request.app.state.api_token)
            if not hmac.compare_digest(good, sig):
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail="bad signature")
            if expires < time.time():
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail="signed URL expired")
        store = factory.blob_store(settings)
        local_path = getattr(store, "local_path", None)
        if local_path is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="media is not stored locally")
        try:
            path = local_path(key)
            found = path.is_file()
        # A key outside the folder, a NUL byte, a name too long: all just "not here".
        except (StorageError, OSError, ValueError) as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file") from exc
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file")
        media_type = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return FileResponse(path, media_type=media_type)

    return routes
