"""Step 2: the transition video from the start keyframe to the end keyframe (Pika or offline)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from catwalk.db import jobs, queries, retry_db, session_scope
from catwalk.db.base import utcnow
from catwalk.tasks._policy import (
    attempt,
    charge,
    retry_transient_only,
    survives_db_outage,
    wait_reporter,
)
from catwalk.tasks.slots import slot_book
from prefect import get_run_logger, task

from catwalk import lifecycle
from catwalk.clients import factory
from catwalk.clients.keys import content_type_for, object_key
from catwalk.clients.limits import provider_slot
from catwalk.config import get_settings
from catwalk.domain import (
    GeneratedVideo,
    JobStatus,
    ProviderProgress,
    SubmittedRequest,
    VideoRequest,
)
from catwalk.errors import JobAlreadyEnded, JobCancelled, ProviderError

_VIDEO_START, _VIDEO_END = 45, 85


def _deadline(
    started_at: dt.datetime | None,
    timeout_s: int,
    *,
    run_started_at: dt.datetime | None = None,
    max_lifetime_s: int | None = None,
) -> float:
    """The video step's deadline as a monotonic clock value, so the provider can cancel in time.

    It falls a little before the flow run's own timeout: the provider request is cancelled
    and the job fails with a clear reason, instead of Prefect interrupting the task mid-call.
    The time limit guards the work, not the wall clock since the job first started: a run
    resumed after a crash (``run_started_at`` later than ``started_at``) gets its own
    ``timeout_s`` to wait for its saved request, bounded by the job's ``max_lifetime_s``
    from ``started_at`` (issue #13: a resumed run used to get 1 s and cancel its request).
    """
    now = utcnow()
    started = started_at or now
    margin = min(30.0, timeout_s * 0.1)
    anchor = max(started, run_started_at or started)
    end = anchor + dt.timedelta(seconds=timeout_s - margin)
    if max_lifetime_s is not None:
        end = min(end, started + dt.timedelta(seconds=max_lifetime_s - margin))
    return time.monotonic() + max((end - now).total_seconds(), 1.0)


def _this_run_started_at() -> dt.datetime | None:
    """When this flow-run process started its run (a resumed run is a new process)."""
    from prefect.runtime import flow_run

    if flow_run.get_id() is None:
        return None
    return _PROCESS_STARTED


# A flow run executes in a process of its own (worker or local launcher), so this module's
# import time is when this run (or re-run) began; Prefect's start_time keeps the first one.
_PROCESS_STARTED = utcnow()


def _save_request(job_id: str, submitted: SubmittedRequest) -> None:
    # Waits out a database outage: a request nobody remembers is cancelled by the client.
    retry_db(lambda: _write_request(job_id, submitted))


def _write_request(job_id: str, submitted: SubmittedRequest) -> None:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None:
            raise JobAlreadyEnded(f"job {job_id} is gone")
        job.video_request_id = submitted.request_id
        job.video_request_urls = submitted.to_dict()
        job.video_request_state = "open"
        queries.record_event(
            session=session,
            job_id=job_id,
            step="video",
            kind="info",
            message=f"provider accepted request {submitted.request_id}",
        )


def _show_progress(job_id: str, progress: ProviderProgress) -> None:
    # A database blip while the provider renders must not cancel the request: wait it out.
    retry_db(lambda: _write_progress(job_id, progress))


def _write_progress(job_id: str, progress: ProviderProgress) -> None:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None or job.status.is_final:
            raise JobAlreadyEnded(f"job {job_id} already ended")
        if job.cancel_requested:
            raise JobCancelled("cancelled by an admin")
        job.queue_position = progress.queue_position
        if progress.queue_position is not None:
            job.wait_reason = f"queued at provider (position {progress.queue_position})"
            job.current_step = job.wait_reason
        else:
            job.wait_reason = None
            job.current_step = progress.message or "rendering video"
        if progress.fraction is not None:
            target = _VIDEO_START + round((_VIDEO_END - _VIDEO_START) * progress.fraction)
            job.progress = max(job.progress, target)


@task(name="animate-keyframes", retry_condition_fn=retry_transient_only)
@survives_db_outage
def animate_keyframes(job_id: str, keyframe_keys: dict[str, str]) -> dict[str, object]:
    """Make (or re-attach to, or reuse) the job's video and store it with its poster.

    The provider's request id is saved the moment it is accepted; a retry or a restarted
    worker resumes that request instead of submitting (and paying for) another.
    """
    logger = get_run_logger()
    settings = get_settings()
    generator = factory.video_generator()
    store = factory.blob_store()
    run = attempt()
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None or job.status.is_final:
            raise JobAlreadyEnded(f"job {job_id} already ended")
        if job.cancel_requested:
            # Cancelled while the keyframes were made: stop before paying for the video.
            raise JobCancelled("cancelled by an admin")
        if job.video_key and job.poster_key and store.head(job.video_key) is not None:
            logger.info("job %s reuses its stored video", job_id)
            return {
                "video_key": job.video_key,
                "poster_key": job.poster_key,
                "duration": job.video_duration_seconds,
            }
        job = jobs.begin_step(
            session=session,
            job_id=job_id,
            status=JobStatus.GENERATING_VIDEO,
            current_step="rendering video",
            event_step="video",
            attempt=run,
        )
        job.video_provider = generator.name
        resume = (
            SubmittedRequest.from_dict(job.video_request_urls) if job.video_request_urls else None
        )
        product_id = job.product_id
        deadline = _deadline(
            # Time spent waiting for a review decision is nobody's work: count from it.
            jobs.work_started(job),
            settings.job_timeout_seconds,
            run_started_at=_this_run_started_at(),
            max_lifetime_s=settings.max_lifetime_seconds(),
        )
        style = str(job.options.get("videoStyle", "smooth"))

    request = VideoRequest(
        start_image=store.get_bytes(keyframe_keys["start"]),
        end_image=store.get_bytes(keyframe_keys["end"]),
        mime_type=content_type_for(keyframe_keys["start"]),
        style=style,  # type: ignore[arg-type]
        duration_seconds=settings.video_duration_seconds,
        resolution=settings.video_resolution,
    )
    work_dir = Path(settings.work_dir) / job_id
    try:
        with provider_slot(
            "video", on_wait=wait_reporter(job_id), deadline=deadline, book=slot_book(job_id)
        ):
            video = generator.animate(
                request,
                work_dir=work_dir,
                resume=resume,
                on_submitted=lambda submitted: _save_request(job_id, submitted),
                on_progress=lambda progress: _show_progress(job_id, progress),
                deadline=deadline,
            )
    except Exception as exc:
        closed = getattr(exc, "provider_request_state", None)
        if closed:
            # The client already cancelled the request: record what fal said (a request it
            # had finished is billed), so ending the job does not cancel it a second time.
            lifecycle.close_provider_request(job_id, verdict=closed, ended_only=False)
        if isinstance(exc, ProviderError):
            failed = exc
            retry_db(lambda: _record_failure(job_id, failed, run))
        raise

    video_key = object_key(product_id, job_id, "video")
    poster_key = object_key(product_id, job_id, "poster")
    store.put_file(video_key, Path(video.path), "video/mp4")
    store.put_file(poster_key, Path(video.poster_path), "image/jpeg")
    retry_db(lambda: _record_video(job_id, run, video, video_key, poster_key))
    for leftover in (Path(video.path), Path(video.poster_path)):
        leftover.unlink(missing_ok=True)
    logger.info("job %s: video stored at %s", job_id, video_key)
    return {"video_key": video_key, "poster_key": poster_key, "duration": video.duration_seconds}


def _record_failure(job_id: str, exc: ProviderError, run: int) -> None:
    with session_scope() as session:
        if exc.usage is not None:
            charge(session=session, job_id=job_id, usage=exc.usage, succeeded=False, note=str(exc))
            # A failed result is the request's end at the provider: nothing runs any more.
            job = queries.get_job(session=session, job_id=job_id)
            if job is not None and job.video_request_state == "open":
                job.video_request_state = "failed"
        jobs.record_step_failure(
            session=session, job_id=job_id, step="video", message=str(exc), attempt=run
        )


def _record_video(
    job_id: str, run: int, video: GeneratedVideo, video_key: str, poster_key: str
) -> None:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None:
            raise JobAlreadyEnded(f"job {job_id} is gone")
        charge(session=session, job_id=job_id, usage=video.usage)
        job.video_key, job.poster_key = video_key, poster_key
        job.provider_video_url = video.provider_url
        job.video_duration_seconds = video.duration_seconds
        job.video_request_state = "collected" if job.video_request_urls else None
        job.queue_position = None
        queries.set_job_step(
            session=session,
            job=job,
            status=JobStatus.GENERATING_VIDEO,
            current_step="video ready",
            progress=_VIDEO_END,
        )
        queries.record_event(
            session=session, job_id=job_id, step="video", kind="succeeded", attempt=run
        )
