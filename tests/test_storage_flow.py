"""Whole jobs with STORAGE_BACKEND=s3 against a moto server over HTTP, and with a full disk.

The product's video URL fetches the MP4 over HTTP; storage failures fail the job with a
clear message after its retries, and the product keeps its previous video.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from catwalk.db import queries, session_scope

from catwalk.cli.demo import seed_demo_catalog
from catwalk.clients import factory
from catwalk.clients.media import probe_video
from catwalk.clients.storage import CACHE_CONTROL, LocalBlobStore, S3BlobStore
from catwalk.domain import JobStatus
from tests.conftest import reset_settings
from tests.disk import fill, tiny_disk
from tests.helpers import frames, run_job_inline
from tests.moto_server import BUCKET, free_port
from tests.storage_checks import (
    assert_no_referenced_file_missing,
    bucket_keys,
    open_deletions,
    public_bucket,
)

pytestmark = pytest.mark.usefixtures("prefect_server")


def _s3() -> S3BlobStore:
    store = factory.blob_store()
    assert isinstance(store, S3BlobStore)
    return store


def _plays(url: str, tmp_path: Path, expected_seconds: float) -> None:
    """GET the URL like a browser would and decode the MP4 it returns."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text[:200]
    assert response.headers["content-type"] == "video/mp4"
    local = tmp_path / "fetched.mp4"
    local.write_bytes(response.content)
    facts = probe_video(local)
    assert facts.codec == "h264"
    assert facts.duration_seconds == pytest.approx(expected_seconds, abs=0.1)
    assert len(frames(local)) == facts.frames > 0


def test_a_job_on_s3_publishes_a_video_that_plays_over_http(s3_settings, tmp_path) -> None:
    store = _s3()
    public_bucket(store)
    seed_demo_catalog()
    job = run_job_inline("demo-tee")

    assert job.status is JobStatus.COMPLETED, job.error_message
    product = job.product
    assert product.video_key == job.video_key
    # The database keeps the key, and a lasting URL built from it (never a signed one).
    assert product.video_url == store.public_url(job.video_key)
    assert product.video_url.startswith(f"{s3_settings.s3_endpoint_url}/{BUCKET}/products/")
    _plays(product.video_url, tmp_path, s3_settings.video_duration_seconds)

    head = store._client.head_object(Bucket=BUCKET, Key=job.video_key)
    assert (head["ContentType"], head["CacheControl"]) == ("video/mp4", CACHE_CONTROL)
    poster = httpx.get(store.url(job.poster_key))
    assert poster.headers["content-type"] == "image/jpeg" and poster.content[:2] == b"\xff\xd8"
    # Keyframes are stored too, where the dashboard can show them and a retry can reuse them.
    for pose in ("start", "end"):
        keyframe = httpx.get(store.url(job.image_keys[pose]))
        assert keyframe.status_code == 200
        assert keyframe.headers["content-type"] == "image/png"
        assert keyframe.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert bucket_keys(store) == {job.video_key, job.poster_key, *job.image_keys.values()}
    assert not (s3_settings.media_dir / "products").exists(), "nothing went to local disk"


def test_signed_urls_are_handed_out_and_the_database_keeps_keys(
    s3_settings, monkeypatch, tmp_path
) -> None:
    reset_settings(monkeypatch, SIGNED_URLS="true", SIGNED_URL_TTL_SECONDS="600")
    store = _s3()
    seed_demo_catalog()
    job = run_job_inline("demo-dress")
    assert job.status is JobStatus.COMPLETED, job.error_message

    stored_url = job.product.video_url
    assert "X-Amz" not in stored_url and stored_url == store.public_url(job.video_key)
    assert httpx.get(stored_url).status_code == 403  # the bucket is private

    # The CLI, a real process, hands out a presigned URL with the configured lifetime.
    status = subprocess.run(
        [sys.executable, "-m", "catwalk.cli", "status", job.id, "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=dict(os.environ),
    )
    assert status.returncode == 0, status.stderr
    video_url = json.loads(status.stdout)["result"]["videoUrl"]
    query = parse_qs(urlsplit(video_url).query)
    assert query["X-Amz-Expires"] == ["600"]
    assert urlsplit(video_url).path == f"/{BUCKET}/{job.video_key}"
    _plays(video_url, tmp_path, s3_settings.video_duration_seconds)


def test_replacing_on_s3_switches_then_deletes_the_old_files(s3_settings) -> None:
    store = _s3()
    seed_demo_catalog()
    first = run_job_inline("demo-jacket")
    second = run_job_inline("demo-jacket", {"videoStyle": "dynamic"})

    assert second.status is JobStatus.COMPLETED
    assert second.product.video_key == second.video_key
    keys = bucket_keys(store)
    assert first.video_key not in keys and first.poster_key not in keys
    assert {second.video_key, second.poster_key} <= keys
    # Keyframes are the jobs' history and stay.
    assert {*first.image_keys.values(), *second.image_keys.values()} <= keys
    assert open_deletions() == []
    with session_scope() as session:
        old = queries.get_job(session=session, job_id=first.id)
        assert old is not None and old.video_key is None and old.poster_key is None
        events = [e.message for e in queries.events_for_job(session=session, job_id=first.id)]
    assert f"video {first.video_key} replaced by job {second.id}" in events
    assert_no_referenced_file_missing(store)


def _break(kind: str, monkeypatch, moto_s3_with_auth) -> tuple[str, int]:
    """Break the storage settings; returns (expected message, expected retries)."""
    if kind == "missing-bucket":
        settings = reset_settings(monkeypatch, S3_BUCKET="no-such-bucket")
        message = (
            f"S3 bucket 'no-such-bucket' at {settings.s3_endpoint_url} does not exist "
            "(create it, or fix S3_BUCKET)"
        )
        return message, 0
    if kind == "bad-credentials":
        reset_settings(monkeypatch, S3_ENDPOINT_URL=moto_s3_with_auth.endpoint)
        message = (
            f"S3 rejected the credentials for bucket '{BUCKET}' at {moto_s3_with_auth.endpoint} "
            "(InvalidAccessKeyId): check S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"
        )
        return message, 0
    closed = f"http://127.0.0.1:{free_port()}"
    reset_settings(monkeypatch, S3_ENDPOINT_URL=closed)
    return f"cannot reach the storage endpoint {closed} during upload of products/", 3


@pytest.mark.parametrize("kind", ["missing-bucket", "bad-credentials", "unreachable-endpoint"])
def test_a_storage_failure_fails_the_job_clearly_and_keeps_the_video(
    s3_settings, monkeypatch, request, tmp_path, kind: str
) -> None:
    store = _s3()
    public_bucket(store)
    seed_demo_catalog()
    good = run_job_inline("demo-hoodie")
    assert good.status is JobStatus.COMPLETED

    auth_server = (
        request.getfixturevalue("moto_s3_with_auth") if kind == "bad-credentials" else None
    )
    message, retries = _break(kind, monkeypatch, auth_server)
    bad = run_job_inline("demo-hoodie")

    assert bad.status is JobStatus.FAILED
    assert bad.error_message is not None
    assert bad.error_message.startswith(f"generating keyframes: {message}"), bad.error_message
    assert s3_settings.s3_secret_access_key.get_secret_value() not in bad.error_message
    assert bad.retry_count == retries
    assert bad.product.video_key == good.video_key
    assert bad.product.video_url == good.product.video_url
    # The previous video is untouched and still plays from its (working) bucket.
    _plays(good.product.video_url, tmp_path, s3_settings.video_duration_seconds)
    assert_no_referenced_file_missing(store)
    assert open_deletions() == []


def test_a_full_local_disk_fails_the_job_clearly_and_keeps_the_video(settings, tmp_path) -> None:
    with tiny_disk(settings.media_dir, size_kib=4096):
        seed_demo_catalog()
        good = run_job_inline("demo-tee")
        assert good.status is JobStatus.COMPLETED
        store = factory.blob_store()
        assert isinstance(store, LocalBlobStore)

        fill(settings.media_dir)
        bad = run_job_inline("demo-tee")

        assert bad.status is JobStatus.FAILED
        assert bad.error_message is not None
        assert bad.error_message.startswith(
            "generating keyframes: local disk is full: cannot store products/"
        ), bad.error_message
        assert bad.retry_count == 0
        assert bad.product.video_key == good.video_key
        facts = probe_video(store.local_path(good.video_key))
        assert facts.duration_seconds == pytest.approx(settings.video_duration_seconds, abs=0.1)
        assert_no_referenced_file_missing(store)
        assert [p for p in settings.media_dir.rglob(".upload-*")] == []


def test_a_retry_on_s3_reuses_the_stored_keyframes(s3_settings, monkeypatch) -> None:
    """The video step fails twice, then succeeds: the keyframes in the bucket are bought once."""
    reset_settings(monkeypatch, OFFLINE_FAIL_STEPS="video:transient:2")
    store = _s3()
    seed_demo_catalog()
    job = run_job_inline("demo-tee")

    assert job.status is JobStatus.COMPLETED, job.error_message
    assert job.retry_count == 2
    with session_scope() as session:
        ledger = queries.ledger_for_job(session=session, job_id=job.id)
    assert [r.operation for r in ledger] == [
        "generate_image",
        "generate_image",
        "judge_keyframes",
        "animate",
    ]
    assert set(job.image_keys.values()) <= bucket_keys(store)
