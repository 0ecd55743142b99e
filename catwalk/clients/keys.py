"""Object keys: one pure function decides where every stored file goes.

Keys are per product and per job (so never reused: a new job never overwrites what the
product points at), and safe for any product id: the id is reduced to a readable ASCII slug
(at most 40 characters of ``[a-z0-9-]``) plus 64 bits of a SHA-256 of the full id, so
``../``, slashes, unicode and very long ids all give a short, unique, path-safe key (at most
150 characters). Job ids must be lowercase hex (``uuid4().hex``), checked with ``fullmatch``
so not even a trailing newline gets through.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_VARIANTS = {
    "video": "video.mp4",
    "poster": "poster.jpg",
    "keyframe-start": "keyframe-start.png",
    "keyframe-end": "keyframe-end.png",
}
_SLUG_MAX = 40
_JOB_ID = re.compile(r"[0-9a-f]{8,64}")


def product_slug(product_id: str) -> str:
    """A path-safe, unique folder name for a product id."""
    ascii_id = unicodedata.normalize("NFKD", product_id).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_id.lower()).strip("-")[:_SLUG_MAX].strip("-")
    # surrogatepass: a lone surrogate (JSON can carry "\ud800") must hash, not crash; the
    # encoding stays one-to-one, so distinct ids still give distinct digests.
    digest = hashlib.sha256(product_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{slug}-{digest}" if slug else digest


def object_key(product_id: str, job_id: str, variant: str) -> str:
    """``products/<slug>/<job_id>/<file>`` for one of the known variants."""
    if variant not in _VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"job id must be lowercase hex, not {job_id!r}")
    return f"products/{product_slug(product_id)}/{job_id}/{_VARIANTS[variant]}"


def content_type_for(key: str) -> str:
    if key.endswith(".mp4"):
        return "video/mp4"
    if key.endswith((".jpg", ".jpeg")):
        return "image/jpeg"
    if key.endswith(".png"):
        return "image/png"
    return "application/octet-stream"
