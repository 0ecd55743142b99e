"""Step 3: check the stored video, point the product at it, then delete what it replaced.

Order matters (REQ-010, safe replace): the new files are already stored under new keys;
the product switches to them in one transaction; only then are the old files deleted. A
failure at any point leaves the product with a working video, and a delete that fails is
kept in ``pending_deletions`` for housekeeping to retry.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from catwalk.db import jobs, queries, retry_db, session_scope
from catwalk.tasks._policy import attempt, retry_transient_only, survives_db_outage
from prefect import get_run_logger, task

from catwalk import lifecycle
from catwalk.clients import factory
from catwalk.clients.media import check_video
from catwalk.config import get_settings
from catwalk.domain import JobStatus, VideoFacts
from catwalk.errors import JobAlreadyEnded, StorageError, describe
from catwalk.lifecycle import delete_pending


@task(name="publish-video", timeout_seconds=300, retry_condition_fn=retry_transient_only)
@survives_db_outage
def publish_video(job_id: str, video: dict[str, object]) -> dict[str, object]:
    """Verify the job's video, switch the product to it, and clean up the old one."""
    logger = get_run_logger()
    settings = get_settings()
    store = factory.blob_store()
    run = attempt()
    video_key, poster_key = str(video["video_key"]), str(video["poster_key"])
    with session_scope() as session:
        jobs.begin_step(
            session=session,
            job_id=job_id,
            status=JobStatus.UPLOADING,
            current_step="checking and publishing video",
            event_step="publish",
            attempt=run,
        )

    facts = _check_stored(video_key, poster_key)

    ended = retry_db(
        lambda: _publish(job_id, run, video_key, poster_key, store.public_url(video_key), facts)
    )
    # What every ending does after its commit: here, the job.completed webhook.
    lifecycle.after_commit(ended, settings=settings)
    # The product is published: cleaning up can no longer fail the job. Whatever is not
    # deleted now stays in pending_deletions for housekeeping.
    try:
        deleted, failed = delete_pending()
    except Exception as exc:  # noqa: BLE001 - logged; the rows stay queued
        logger.warning(
            "job %s: cleaning up old files failed (%s); housekeeping will retry",
            job_id,
            describe(exc),
        )
        deleted, failed = 0, 1
    if failed:
        logger.warning(
            "job %s: %d old file(s) could not be deleted yet; housekeeping will retry",
            job_id,
            failed,
        )
    logger.info("job %s completed: %s", job_id, video_key)
    return {
        "video_key": video_key,
        "poster_key": poster_key,
        "duration": facts.duration_seconds,
        "old_files_deleted": deleted,
    }


def _check_stored(video_key: str, poster_key: str) -> VideoFacts:
    """Check the stored bytes, not the render: they are what viewers get."""
    settings = get_settings()
    store = factory.blob_store()
    with tempfile.TemporaryDirectory(dir=_scratch(settings.work_dir)) as tmp:
        local = Path(tmp) / "check.mp4"
        local.write_bytes(store.get_bytes(video_key))
        facts = check_video(local, expected_seconds=settings.video_duration_seconds)
    if store.head(poster_key) is None:
        raise StorageError(f"poster missing from storage: {poster_key}")
    return facts


@task(name="verify-video", timeout_seconds=300, retry_condition_fn=retry_transient_only)
@survives_db_outage
def verify_video(job_id: str, video: dict[str, object]) -> dict[str, object]:
    """Check the stored video before anyone reviews it (REVIEW=publish): an admin approves
    only a video that would publish. Publishing checks it again: cheap, and the bytes could
    have changed while the job waited."""
    facts = _check_stored(str(video["video_key"]), str(video["poster_key"]))
    get_run_logger().info(
        "job %s: video checked (%s %dx%d, %.2f s)",
        job_id,
        facts.codec,
        facts.width,
        facts.height,
        facts.duration_seconds,
    )
    return {"duration": facts.duration_seconds, "width": facts.width, "height": facts.height}


def _publish(
    job_id: str, run: int, video_key: str, poster_key: str, video_url: str, facts: VideoFacts
) -> jobs.Ended:
    """Switch the product and end the job COMPLETED, in one transaction."""
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None or job.status.is_final:
            raise JobAlreadyEnded(f"job {job_id} already ended")
        queries.switch_product_video(
            session=session,
            job=job,
            video_key=video_key,
            poster_key=poster_key,
            video_url=video_url,
        )
        job.video_duration_seconds = facts.duration_seconds
        session.flush()
        queries.record_event(
            session=session,
            job_id=job_id,
            step="publish",
            kind="succeeded",
            attempt=run,
            message=f"{facts.codec} {facts.width}x{facts.height}, {facts.duration_seconds:.2f} s, {facts.size_bytes} bytes",
        )
        ended = jobs.end_job(session=session, job_id=job_id, outcome=JobStatus.COMPLETED)
        if ended is None:
            raise JobAlreadyEnded(f"job {job_id} already ended")
    return ended


def _scratch(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)
