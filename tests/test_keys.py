"""object_key: any product id gives a safe, bounded, unique key (Hypothesis properties)."""

from __future__ import annotations

import posixpath
import re
import uuid

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from catwalk.clients.keys import content_type_for, object_key, product_slug

VARIANTS = ["video", "poster", "keyframe-start", "keyframe-end"]
KEY = re.compile(
    r"products/(?:[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?-)?[0-9a-f]{16}/[0-9a-f]{8,64}/"
    r"(?:video\.mp4|poster\.jpg|keyframe-start\.png|keyframe-end\.png)"
)
MAX_KEY_LENGTH = 150

# Any string at all: every Unicode category, including lone surrogates (JSON can carry
# them: "\ud800"), control characters, path separators and dots, up to very long.
product_ids = st.text(
    alphabet=st.characters(codec=None, categories=None), max_size=2000
) | st.sampled_from(
    ["", ".", "..", "../", "../../etc/passwd", "/", "a/b", "a\\b", "\x00", "CON", "ü" * 3000]
)
job_ids = st.uuids().map(lambda u: u.hex)


@settings(max_examples=400, deadline=None)
@given(product_id=product_ids, job_id=job_ids, variant=st.sampled_from(VARIANTS))
@example(product_id="../" * 500, job_id=uuid.uuid4().hex, variant="video")
@example(product_id="\ud800/..", job_id=uuid.uuid4().hex, variant="poster")
def test_any_product_id_gives_a_safe_bounded_key(
    product_id: str, job_id: str, variant: str
) -> None:
    key = object_key(product_id, job_id, variant)
    assert KEY.fullmatch(key), key
    assert key.isascii() and len(key) <= MAX_KEY_LENGTH
    segments = key.split("/")
    assert all(segment not in ("", ".", "..") for segment in segments)
    assert posixpath.normpath(key) == key and not key.startswith("/")
    assert segments[2] == job_id  # per job: the job is in the key
    assert key == object_key(product_id, job_id, variant)  # pure: same inputs, same key
    assert content_type_for(key) in ("video/mp4", "image/jpeg", "image/png")


@settings(max_examples=400, deadline=None)
@given(a=product_ids, b=product_ids, job_id=job_ids)
@example(a="Shirt", b="shirt", job_id="0123456789abcdef")  # same slug, different ids
@example(a="a/b", b="a-b", job_id="0123456789abcdef")
@example(a="é", b="e\u0301", job_id="0123456789abcdef")  # same text, different code points
@example(a="x" * 41, b="x" * 42, job_id="0123456789abcdef")  # same truncated slug
def test_distinct_product_ids_give_distinct_keys(a: str, b: str, job_id: str) -> None:
    if a == b:
        assert object_key(a, job_id, "video") == object_key(b, job_id, "video")
    else:
        assert product_slug(a) != product_slug(b)
        assert object_key(a, job_id, "video") != object_key(b, job_id, "video")


@given(product_id=product_ids, first=job_ids, second=job_ids)
def test_a_new_job_never_reuses_a_key(product_id: str, first: str, second: str) -> None:
    keys_first = {object_key(product_id, first, v) for v in VARIANTS}
    keys_second = {object_key(product_id, second, v) for v in VARIANTS}
    assert len(keys_first) == len(VARIANTS)
    if first != second:
        assert keys_first.isdisjoint(keys_second)


@pytest.mark.parametrize(
    "job_id", ["", "ABCDEF12", "0123456789abcdef\n", "../../../0123", "0123456", "0" * 65, "g" * 32]
)
def test_job_ids_must_be_lowercase_hex(job_id: str) -> None:
    with pytest.raises(ValueError, match="job id must be lowercase hex"):
        object_key("shirt", job_id, "video")


def test_unknown_variants_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        object_key("shirt", "0123456789abcdef", "../video")


def test_keys_stay_readable() -> None:
    assert object_key("Linen Shirt (Blue)", "0123456789abcdef", "video").startswith(
        "products/linen-shirt-blue-"
    )
