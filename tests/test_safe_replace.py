"""Safe replace (REQ-010) on S3, failing at every point: upload, verify, check, switch, delete.

Each test publishes a first video, then makes a second job fail (or crash) at one point and
checks the two guarantees: the product still has a working video, and no file the database
refers to is missing. A delete that fails stays queued and ``delete_pending`` finishes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from catwalk.db import queries, session_scope
from catwalk.db.models import PendingDeletion, VideoJob
from catwalk.tasks import publish as publish_task
from catwalk.tasks.publish import delete_pending

from catwalk.cli.demo import seed_demo_catalog
from catwalk.clients import factory
from catwalk.clients.storage import S3BlobStore
from catwalk.domain import JobStatus
from catwalk.errors import StorageError, TransientStorageError
from tests.helpers import run_job_inline
from tests.storage_checks import (
    assert_no_referenced_file_missing,
    bucket_keys,
    open_deletions,
    public_bucket,
)

pytestmark = pytest.mark.usefixtures("prefect_server")
PRODUCT = "demo-tee"


def _store(cls: type[S3BlobStore] = S3BlobStore) -> S3BlobStore:
    from catwalk.config import get_settings

    return cls.from_settings(get_settings())


@pytest.fixture
def published(s3_settings) -> VideoJob:
    """A product with a published video on a public bucket."""
    store = _store()
    public_bucket(store)
    seed_demo_catalog()
    job = run_job_inline(PRODUCT)
    assert job.status is JobStatus.COMPLETED
    return job


def _still_playing(first: VideoJob, job: VideoJob) -> None:
    """The product kept the first video, and it is really there over HTTP."""
    assert job.product.video_key == first.video_key
    assert job.product.video_url == first.product.video_url
    response = httpx.get(job.product.video_url)
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    assert_no_referenced_file_missing(_store())


# 1. The upload fails --------------------------------------------------------------------------


class _VideoUploadsFail(S3BlobStore):
    def put_file(self, key: str, path: Path, content_type: str) -> Any:
        if key.endswith(".mp4"):
            raise TransientStorageError("S3 upload failed: connection reset")
        return super().put_file(key, path, content_type)


def test_a_failed_upload_keeps_the_video(published) -> None:
    with factory.override(storage=_store(_VideoUploadsFail)):
        job = run_job_inline(PRODUCT)
    assert job.status is JobStatus.FAILED
    assert job.error_message == "rendering video: S3 upload failed: connection reset"
    assert job.retry_count == 3
    _still_playing(published, job)
    assert open_deletions() == []


# 2. The upload stored other bytes: verification refuses it -----------------------------------


class _TamperingBlock:
    """The S3Bucket block, except that videos arrive truncated (a broken proxy, say)."""

    def __init__(self, store: S3BlobStore) -> None:
        self._store, self._real = store, store._bucket_block

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def upload_from_path(self, from_path: Any, to_path: str, **kwargs: Any) -> str:
        data = Path(from_path).read_bytes()[:-100]
        self._store._client.put_object(
            Bucket=self._store.bucket, Key=to_path, Body=data, **kwargs["ExtraArgs"]
        )
        return to_path


def test_an_upload_that_fails_verification_is_never_published(published) -> None:
    store = _store()
    store._bucket_block = _TamperingBlock(store)  # type: ignore[assignment]
    with factory.override(storage=store):
        job = run_job_inline(PRODUCT)
    assert job.status is JobStatus.FAILED
    assert job.error_message is not None
    assert "bytes in bucket 'catwalk-media', expected" in job.error_message
    assert job.video_key is None  # the job never recorded the unverified file
    _still_playing(published, job)


# 3. The stored video is broken: the pre-publish check refuses it ------------------------------


class _BrokenVideoReads(S3BlobStore):
    def get_bytes(self, key: str) -> bytes:
        data = super().get_bytes(key)
        return data[: len(data) // 3] if key.endswith(".mp4") else data


def test_a_video_failing_the_check_is_never_published(published) -> None:
    with factory.override(storage=_store(_BrokenVideoReads)):
        job = run_job_inline(PRODUCT)
    assert job.status is JobStatus.FAILED
    assert job.error_message is not None
    assert job.error_message.startswith("publishing video: the video file is not playable"), (
        job.error_message
    )
    assert job.retry_count == 0
    _still_playing(published, job)
    assert open_deletions() == []


# 4. The switch fails mid-transaction ----------------------------------------------------------


@pytest.mark.both_dbs
def test_a_switch_that_fails_mid_transaction_changes_nothing(published, monkeypatch) -> None:
    real_switch = queries.switch_product_video

    def switch_then_fail(**kwargs: Any) -> list[str]:
        real_switch(**kwargs)  # the product row is changed and deletions queued ...
        raise RuntimeError("connection to the database lost")  # ... then the commit never happens

    monkeypatch.setattr(queries, "switch_product_video", switch_then_fail)
    job = run_job_inline(PRODUCT)

    assert job.status is JobStatus.FAILED
    assert job.error_message == (
        "publishing video: internal error (RuntimeError): connection to the database lost"
    )
    _still_playing(published, job)
    assert open_deletions() == []  # rolled back with the switch
    with session_scope() as session:
        first = queries.get_job(session=session, job_id=published.id)
        assert first is not None and first.video_key == published.video_key


# 5. The delete of the old files fails ---------------------------------------------------------


class _DeletesFail(S3BlobStore):
    def delete(self, key: str) -> None:
        raise StorageError(f"S3 denied access to bucket 'catwalk-media' during delete of {key}")


def test_a_failed_delete_is_recorded_and_retried_later(published) -> None:
    with factory.override(storage=_store(_DeletesFail)):
        job = run_job_inline(PRODUCT)

    assert job.status is JobStatus.COMPLETED  # cleaning up never fails a published job
    assert job.product.video_key == job.video_key != published.video_key
    store = _store()
    old = {published.video_key, published.poster_key}
    assert old <= bucket_keys(store)  # not deleted yet ...
    pending = open_deletions()
    assert {key for key, _, _ in pending} == old  # ... and not forgotten either
    for key, attempts, error in pending:
        assert attempts == 1
        assert error == f"S3 denied access to bucket 'catwalk-media' during delete of {key}"
    assert_no_referenced_file_missing(store)

    # Housekeeping, later, with storage working again.
    with factory.override(storage=_store(_DeletesFail)):
        assert delete_pending() == (0, 2)  # still failing: still queued, attempts counted
    assert [attempts for _, attempts, _ in open_deletions()] == [2, 2]
    assert delete_pending() == (2, 0)
    assert open_deletions() == []
    assert not old & bucket_keys(store)
    assert httpx.get(job.product.video_url).status_code == 200
    assert_no_referenced_file_missing(store)


# 6. The process dies right after the switch committed -----------------------------------------


def test_a_crash_between_switch_and_delete_leaves_the_deletes_queued(
    published, monkeypatch
) -> None:
    # As if the worker died the moment the transaction committed: no delete ran at all.
    monkeypatch.setattr(publish_task, "delete_pending", lambda **_: (0, 0))
    job = run_job_inline(PRODUCT)
    assert job.status is JobStatus.COMPLETED
    assert {(key, attempts) for key, attempts, _ in open_deletions()} == {
        (published.video_key, 0),
        (published.poster_key, 0),
    }
    store = _store()
    assert_no_referenced_file_missing(store)
    monkeypatch.undo()

    assert delete_pending() == (2, 0)
    assert open_deletions() == []
    assert published.video_key not in bucket_keys(store)
    assert_no_referenced_file_missing(store)


# 7. Nothing the database still uses is ever deleted, whatever queued it -----------------------


def test_a_queued_key_still_in_use_is_kept(published) -> None:
    with session_scope() as session:
        session.add(PendingDeletion(key=published.video_key, reason="queued by mistake"))
    assert delete_pending() == (0, 0)
    assert open_deletions() == []
    with session_scope() as session:
        row = session.query(PendingDeletion).one()
        assert row.done_at is not None and row.last_error == "kept: still in use"
    assert published.video_key in bucket_keys(_store())
    assert_no_referenced_file_missing(_store())


# 8. A retried publish after the switch committed changes nothing ------------------------------


def test_switching_twice_to_the_same_video_queues_nothing(published) -> None:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=published.id)
        assert job is not None
        stale = queries.switch_product_video(
            session=session,
            job=job,
            video_key=published.video_key,
            poster_key=published.poster_key,
            video_url=published.product.video_url,
        )
    assert stale == []
    assert open_deletions() == []
    assert_no_referenced_file_missing(_store())
