"""Media for signed-in sessions only: the dashboard's signed, expiring links and their route.

Streamlit serves whatever ``st.image``/``st.video`` are given as a path or bytes under its own
``/media/<hash>``, to anyone who has the address, signed in or not. So the dashboard never gives
them a path: it mints a link to ``/catwalk-media/<ref>`` (``ref`` is ``store/<key>`` for a
stored video or keyframe, ``photo/<product id>`` for a product's photo), and this module's
route (mounted beside Streamlit's by ``dashboards/server.py``, an ``st.App``) serves the file
only for a link whose signature is good, whose expiry has not passed and whose grant is live.

A grant is a random id a signed-in browser session holds; signing out revokes it, so its links
die at once rather than at their expiry. Grants live in this process, as Streamlit's sessions
do (several dashboard processes need sticky sessions for Streamlit anyway). The HMAC key is the
install's own: 32 random bytes made once in ``CATWALK_HOME/dashboard-media.key`` (mode 600).
The signing itself is ``clients.signed_media``, the scheme the API's ``/media`` uses.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import MutableMapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from catwalk.db import queries, session_scope
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from catwalk.clients import factory, media, signed_media
from catwalk.clients.keys import content_type_for
from catwalk.config import Settings, get_settings
from catwalk.errors import CatwalkError, ProductImageError

ROUTE = "/catwalk-media"
KEY_FILE = "dashboard-media.key"
#: A link's life: long enough to watch a page, short enough that a copied link soon dies.
TTL_SECONDS = 3600
#: Expiries are rounded up to this, so a page rerunning every 2 s keeps the same links.
_STEP_SECONDS = 600
_SESSION_GRANT = "media_grant"
# What a served file may do in a browser: be shown, nothing else (no script, no frames),
# and be taken for what its type says (a text file named .png is not sniffed into HTML).
_MEDIA_HEADERS = {
    "Cache-Control": "private, max-age=600",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Grants:
    """Live grants, each with the latest expiry of a link signed for it (thread-safe)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, until: float) -> str:
        grant = secrets.token_urlsafe(18)
        with self._lock:
            self._prune(time.time())
            self._until[grant] = until
        return grant

    def extend(self, grant: str, until: float) -> bool:
        """Keep ``grant`` until ``until``; False when it is gone (revoked or long unused)."""
        with self._lock:
            if grant not in self._until:
                return False
            self._until[grant] = max(self._until[grant], until)
            return True

    def revoke(self, grant: str) -> None:
        with self._lock:
            self._until.pop(grant, None)

    def alive(self, grant: str, now: float) -> bool:
        with self._lock:
            return self._until.get(grant, 0.0) >= now

    def _prune(self, now: float) -> None:
        # A grant past its last link's expiry can sign nothing valid: forget it (an open tab
        # that comes back gets a new one), so grants of closed tabs do not pile up.
        for grant in [g for g, until in self._until.items() if until < now]:
            del self._until[grant]


GRANTS = Grants()


def _key_path(settings: Settings) -> Path:
    return settings.catwalk_home / KEY_FILE


@lru_cache(maxsize=4)
def install_secret(path: Path) -> bytes:
    """The 32 random bytes kept in ``path``, made (mode 600) by the first process to ask."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once agree on the first one's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(signed_media.new_secret())
    return path.read_bytes()


def signing_key(settings: Settings) -> bytes:
    """The install's key for dashboard links (made on first use)."""
    secret = install_secret(_key_path(settings))
    if len(secret) < 32:
        raise CatwalkError(f"{KEY_FILE} in CATWALK_HOME is damaged: delete it to make a new one")
    return signed_media.derive_key(secret, b"catwalk dashboard media v1")


def session_grant(state: MutableMapping[str, Any], until: float) -> str:
    """The grant of a signed-in session (its ``st.session_state``), kept live until ``until``."""
    grant = state.get(_SESSION_GRANT)
    if isinstance(grant, str) and GRANTS.extend(grant, until):
        return grant
    grant = GRANTS.issue(until)
    state[_SESSION_GRANT] = grant
    return grant


def end_session(state: MutableMapping[str, Any]) -> None:
    """Sign-out: the session's links stop working now, not at their expiry."""
    grant = state.pop(_SESSION_GRANT, None)
    if isinstance(grant, str):
        GRANTS.revoke(grant)


def link_expiry(now: float | None = None) -> int:
    """The expiry of a link made now."""
    return signed_media.expiry(TTL_SECONDS, step=_STEP_SECONDS, now=now)


def link(origin: str, ref: str, *, grant: str, expires: int, settings: Settings) -> str:
    """A signed link to ``ref`` for ``grant``'s session, at the dashboard's ``origin``."""
    sig = signed_media.signature(signing_key(settings), ref, str(expires), grant)
    return f"{origin.rstrip('/')}{ROUTE}/{quote(ref, safe='/')}?exp={expires}&g={grant}&sig={sig}"


def origin_of(url: str | None) -> str:
    """``scheme://host[:port]`` of the page's address in the browser (AppTest has none)."""
    parts = urlsplit(url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return "http://localhost"


def photo_file(settings: Settings, ref: str | None) -> Path | None:
    """The local file a product photo reference names, if it is inside MEDIA_IMPORT_ROOTS."""
    if not ref or ref.startswith(("http://", "https://")):
        return None
    try:
        # The folders jobs read photos from: a catalog row saying /etc/passwd gets nothing.
        real = media.local_photo_path(ref, settings=settings)
        return real if real.is_file() else None
    except (ProductImageError, OSError, ValueError):
        return None


def _product_photo(settings: Settings, product_id: str) -> Path | None:
    with session_scope(settings) as session:
        try:
            product = queries.get_product(session=session, product_id=product_id)
        except CatwalkError:
            return None
        ref = product.images[0] if product.images else None
    return photo_file(settings, ref)


def resolve(settings: Settings, ref: str) -> Path | None:
    """The local file ``ref`` names, or None."""
    kind, _, rest = ref.partition("/")
    if kind == "store" and rest:
        return signed_media.local_file(factory.blob_store(settings), rest)
    if kind == "photo" and rest:
        return _product_photo(settings, rest)
    return None


def refusal(settings: Settings, ref: str, params: dict[str, str], now: float) -> str | None:
    """Why the request for ``ref`` is refused, or None (signature, expiry, then the grant)."""
    grant, sig = params.get("g", ""), params.get("sig", "")
    try:
        expires = int(params.get("exp", ""))
    except ValueError:
        return signed_media.REQUIRED
    if not grant or not sig:
        return signed_media.REQUIRED
    refused = signed_media.refusal(
        signing_key(settings), ref, str(expires), grant, expires=expires, sig=sig, now=now
    )
    if refused:
        return refused
    if not GRANTS.alive(grant, now):
        return "signed out"
    return None


async def serve(request: Request) -> Response:
    settings = get_settings()
    ref = request.path_params["ref"]
    refused = refusal(settings, ref, dict(request.query_params), time.time())
    if refused:
        return PlainTextResponse(refused, status_code=403, headers=_MEDIA_HEADERS)
    path = await run_in_threadpool(resolve, settings, ref)
    if path is None:
        return PlainTextResponse("no such file", status_code=404, headers=_MEDIA_HEADERS)
    return FileResponse(
        path, media_type=content_type_for(path.name.lower()), headers=_MEDIA_HEADERS
    )


def routes() -> list[Route]:
    return [Route(f"{ROUTE}/{{ref:path}}", serve, methods=["GET", "HEAD"])]
