"""Media URLs other systems can fetch when videos live in local files (STORAGE_BACKEND=local).

A ``file://`` URL means nothing to the shop's other machines, so the API serves the media
folder itself under ``/media/<key>`` (HTTP Range included: players seek, and resume). Like a
bucket, the URLs are public unless ``SIGNED_URLS`` is on; then each carries an expiry and an
HMAC-SHA256 signature (key derived from the API token, which itself never appears) and the
API refuses it after ``SIGNED_URL_TTL_SECONDS``. The URLs themselves are built in
``catwalk.clients.links``, which the webhook sender shares.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse

from catwalk.api.schemas import ErrorBody
from catwalk.clients import factory, links, signed_media
from catwalk.clients.keys import content_type_for
from catwalk.clients.links import MEDIA_PREFIX, media_url, sign
from catwalk.config import Settings

__all__ = ["MEDIA_PREFIX", "fetchable_url", "media_url", "router", "sign"]


def fetchable_url(request: Request, key: str | None, settings: Settings) -> str | None:
    """What the API hands out for a stored object: the store's own URL unless it is a file,
    then this API's /media URL (at API_PUBLIC_URL when set, else the request's host)."""
    return links.fetchable_url(
        factory.blob_store(settings),
        key,
        settings=settings,
        base_url=str(request.base_url),
        api_token=request.app.state.api_token,
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
                links.signing_key(request.app.state.api_token),
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
