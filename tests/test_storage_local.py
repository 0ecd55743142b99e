"""LocalBlobStore: atomic writes, verified sizes, safe paths, and a really full disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from catwalk.clients.keys import object_key
from catwalk.clients.storage import LocalBlobStore
from catwalk.errors import StorageError
from tests.disk import fill, tiny_disk

JOB = "0123456789abcdef0123456789abcdef"


def test_files_round_trip_with_their_checksum(tmp_path) -> None:
    store = LocalBlobStore(tmp_path / "media")
    source = tmp_path / "v.mp4"
    source.write_bytes(os.urandom(300_000))
    key = object_key("linen-shirt", JOB, "video")

    stored = store.put_file(key, source, "video/mp4")
    assert (stored.size, stored.checksum) == (300_000, hashlib.md5(source.read_bytes()).hexdigest())
    assert store.get_bytes(key) == source.read_bytes()
    head = store.head(key)
    assert head is not None and (head.size, head.content_type) == (300_000, "video/mp4")
    assert store.url(key) == store.local_path(key).as_uri() == store.public_url(key)
    assert store.local_path(key).is_relative_to(tmp_path / "media")

    store.delete(key)
    assert store.head(key) is None
    # Empty job and product folders go too; the media folder stays.
    assert list((tmp_path / "media").iterdir()) == []
    store.delete(key)  # already gone: fine


@pytest.mark.parametrize("key", ["../outside.mp4", "/etc/passwd", "products/../../x", "", "."])
def test_keys_outside_the_media_folder_are_refused(tmp_path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "media")
    with pytest.raises(StorageError, match="refusing a key outside the media folder"):
        store.put_bytes(key, b"x", "image/png")
    assert not (tmp_path / "outside.mp4").exists()


def test_a_missing_file_says_so(tmp_path) -> None:
    store = LocalBlobStore(tmp_path / "media")
    with pytest.raises(StorageError, match="stored file missing: products/a/b.mp4"):
        store.get_bytes("products/a/b.mp4")


def test_a_full_disk_is_named_and_leaves_nothing_half_written(tmp_path) -> None:
    media = tmp_path / "media"
    with tiny_disk(media, size_kib=256):
        store = LocalBlobStore(media)
        keep = object_key("linen-shirt", "aaaaaaaa", "poster")
        store.put_bytes(keep, b"poster bytes", "image/jpeg")
        source = tmp_path / "big.mp4"
        source.write_bytes(os.urandom(1024 * 1024))  # 1 MiB into 256 KiB
        key = object_key("linen-shirt", JOB, "video")

        with pytest.raises(StorageError) as caught:
            store.put_file(key, source, "video/mp4")
        assert str(caught.value) == f"local disk is full: cannot store {key}"
        assert isinstance(caught.value.__cause__, OSError)
        # No half file under the key, no temp file left behind; what was there is intact.
        assert store.head(key) is None
        assert [p.name for p in media.rglob(".upload-*")] == []
        assert store.get_bytes(keep) == b"poster bytes"

        # Even a small write fails plainly once the disk is full to the last block.
        fill(media)
        with pytest.raises(StorageError, match="^local disk is full: cannot store "):
            store.put_bytes(
                object_key("linen-shirt", JOB, "keyframe-start"), b"x" * 8192, "image/png"
            )


def test_an_unreadable_source_is_named(tmp_path) -> None:
    store = LocalBlobStore(tmp_path / "media")
    with pytest.raises(StorageError, match=f"cannot read {tmp_path / 'nope.mp4'}"):
        store.put_file("products/a/v.mp4", tmp_path / "nope.mp4", "video/mp4")


def test_a_read_only_media_folder_is_named(tmp_path) -> None:
    media = tmp_path / "media"
    with tiny_disk(media, size_kib=64, read_only=True):
        store = LocalBlobStore(media)
        with pytest.raises(StorageError, match="^no permission to write products/"):
            store.put_bytes(object_key("x", JOB, "poster"), b"x", "image/jpeg")


def test_every_key_lands_inside_the_media_folder(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "media")
    for product_id in ["../../etc/passwd", "a/b/c", "..", "ünï/cødé", "x" * 5000, "\x00\n"]:
        key = object_key(product_id, JOB, "video")
        store.put_bytes(key, b"v", "video/mp4")
        assert store.local_path(key).is_relative_to(tmp_path / "media")
    assert not (tmp_path / "etc").exists()
