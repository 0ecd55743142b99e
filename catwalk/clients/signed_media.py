"""Signed, expiring links to media in local storage: the one HMAC scheme behind the API's
``/media/<key>`` (when ``SIGNED_URLS`` is on) and the dashboard's ``/catwalk-media/<ref>``.

A link carries its expiry and an HMAC-SHA256 of its parts (the key, the expiry and, for the
dashboard, the signed-in session's grant) under a secret its server holds; the link says
nothing about that secret. Also here, the part of serving such a link both servers share:
which local file a stored key names.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path

from catwalk.clients.base import BlobStore
from catwalk.errors import StorageError

REQUIRED = "signed URL required"
BAD = "bad signature"
EXPIRED = "signed URL expired"


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A key of its own per use, so a leaked link says nothing about the secret behind it."""
    return hmac.new(secret, purpose, hashlib.sha256).digest()


def signature(key: bytes, *parts: str) -> str:
    # Parts are joined by newlines: one inside a part could make two different links sign
    # the same message, so such a part is refused rather than signed.
    if any("\n" in part for part in parts):
        raise ValueError("a signed part cannot contain a line break")
    return hmac.new(key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def refusal(
    key: bytes, *parts: str, expires: int, sig: str, now: float | None = None
) -> str | None:
    """Why a link is refused (its signature first, then its expiry), or None when it is good.

    ``parts`` are every signed part in order, the expiry (as text) among them.
    """
    try:
        good = signature(key, *parts)
    except ValueError:
        return BAD
    if not hmac.compare_digest(good, sig):
        return BAD
    if expires < (time.time() if now is None else now):
        return EXPIRED
    return None


def expiry(ttl_seconds: int, *, step: int = 0, now: float | None = None) -> int:
    """When a link made now expires: at least ``ttl_seconds`` away, rounded up to ``step``.

    Rounding keeps a link the same across a page's reruns (every 2 s on a live page), so the
    browser neither reloads the image nor restarts the video each time.
    """
    at = int(time.time() if now is None else now) + ttl_seconds
    return -(-at // step) * step if step > 0 else at


def local_file(store: BlobStore, key: str) -> Path | None:
    """The file a stored key names, or None (not local storage, outside its folder, missing)."""
    local_path = getattr(store, "local_path", None)
    if local_path is None:
        return None
    try:
        path: Path = local_path(key)
        found = path.is_file()
    # A key outside the folder, a NUL byte, a name too long: all just "not here".
    except (StorageError, OSError, ValueError):
        return None
    return path if found else None


def new_secret() -> bytes:
    return secrets.token_bytes(32)
