"""Submitting a video job: the one path the CLI, the dashboard and the HTTP API share.

``submit_job`` validates the request, records the job (or returns the product's job in
flight), and hands it to a launcher that starts the flow run in the background. It answers
as soon as the job is recorded: the flow never runs inside the request.

``retry_job`` re-runs a failed or cancelled job under its own id (the steps reuse what the job
already paid for), ``retry_cost`` says first what the re-run may still cost, and
``cancel_job`` asks a job to stop. ``use_launcher`` swaps the launcher for a block (tests,
the dashboard's tests) without patching.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import update

from catwalk import lifecycle, pricing
from catwalk.clients import factory
from catwalk.clients.media import identify_image, read_image_source
from catwalk.config import Settings, get_settings
from catwalk.db import jobs, limits, queries, session_scope
from catwalk.db.models import VideoJob
from catwalk.domain import POSES, JobOptions, JobStatus
from catwalk.errors import (
    CatwalkError,
    ConfigError,
    InputError,
    LaunchError,
    ProductImageError,
    describe,
)
from catwalk.failures import FailureKind

# Typical end-to-end time of a job with the real providers (keyframes ~2x10 s, Pika queue
# and render ~60-120 s, publish a few seconds): the contract's ``estimatedTime``.
ESTIMATED_JOB_SECONDS = 150


@dataclass(frozen=True, slots=True)
class Submission:
    job_id: str
    status: JobStatus
    created: bool
    estimated_time: int


class Launcher(Protocol):
    """Starts the flow run for a recorded job; returns the run's id when known.

    ``run_key`` names this run of the job (a retry is a new run of the same job); launchers
    that deduplicate starts (Prefect's idempotency key) use it, others ignore it.
    """

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], run_key: str | None = None
    ) -> str | None: ...


class LocalProcessLauncher:
    """Embedded mode: jobs queue for a bounded number of background processes.

    Each job is spooled and run by ``catwalk run-job`` from the home's one queue runner
    (``catwalk/local_queue.py``), at most ``LOCAL_JOB_PROCESSES`` at once.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], run_key: str | None = None
    ) -> str | None:
        logs = self._settings.logs_dir
        logs.mkdir(parents=True, exist_ok=True)
        # The child must see the same home and database even when this process's settings
        # were built in code (tests, the dashboard) rather than read from the environment.
        env = {
            **os.environ,
            "CATWALK_HOME": str(self._settings.catwalk_home),
            "DATABASE_URL": self._settings.effective_database_url,
        }
        from catwalk import local_queue

        local_queue.spool(self._settings.catwalk_home, job_id)
        local_queue.ensure_runner(self._settings.catwalk_home, env)
        return None


_launcher_override: list[Launcher] = []


@contextmanager
def use_launcher(launcher: Launcher) -> Iterator[None]:
    """Start jobs with ``launcher`` inside the block (tests; the CLI demo's in-process runs)."""
    _launcher_override.append(launcher)
    try:
        yield
    finally:
        _launcher_override.remove(launcher)


def default_launcher(settings: Settings) -> Launcher:
    if _launcher_override:
        return _launcher_override[-1]
    if settings.launcher == "local":
        return LocalProcessLauncher(settings)
    from catwalk.deployments.launcher import DeploymentLauncher

    return DeploymentLauncher(settings)


def check_product_image(images: list[str], *, product_id: str) -> None:
    """Refuse at once a product with no image or a local file that is not an image.

    URLs are checked by the job itself: fetching them here could break the promise that
    a submission answers within a second.
    """
    if not images:
        raise ProductImageError(f"product {product_id!r} has no image")
    first = images[0]
    if not first.startswith(("http://", "https://")):
        # The header says whether it is an image; decoding the pixels (milliseconds to tens
        # of milliseconds a photo) is left to the job, which re-encodes it anyway.
        identify_image(read_image_source(first), source=first)


def submit_job(
    product_id: str,
    options: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    launcher: Launcher | None = None,
) -> Submission:
    """Record a job for the product and start it in the background.

    Raises ``LimitExceeded`` (and records nothing) when today's generation limit or budget
    is used up; a product's job in flight is returned without using another generation.
    """
    settings = settings or get_settings()
    job_options = JobOptions.from_mapping(options)
    from catwalk.preflight import check_submission_config

    check_submission_config(settings)  # a job that cannot run is refused, not recorded
    estimate = pricing.estimate_job_cost(settings)
    # Read, then check the photo (a file read) with no transaction open: the admission
    # below is a short write that commits at once, because it ends holding the day's row.
    with session_scope(settings) as session:
        images = queries.product_images(session=session, product_id=product_id)
    check_product_image(images, product_id=product_id)
    with session_scope(settings) as session:
        admission = limits.admit(
            session=session,
            settings=settings,
            product_id=product_id,
            options=job_options,
            estimated_cost=estimate,
        )
    if admission.created:
        launch_job(
            admission.job_id,
            product_id,
            job_options.to_dict(),
            settings=settings,
            launcher=launcher,
        )
    return Submission(
        job_id=admission.job_id,
        status=admission.status,
        created=admission.created,
        estimated_time=ESTIMATED_JOB_SECONDS,
    )


def launch_job(
    job_id: str,
    product_id: str,
    options: dict[str, Any],
    *,
    run_key: str | None = None,
    settings: Settings,
    launcher: Launcher | None = None,
) -> None:
    """Start a recorded job's run (a submission, a retry, a review decision) and note its
    flow run. A launch that fails ends the job FAILED with the reason, never PENDING with
    nothing to run it, and raises (``LaunchError`` unless the error is already catwalk's)."""
    launcher = launcher or default_launcher(settings)
    # A first run needs no key (the launcher's own default); a relaunch names itself.
    extra = {"run_key": run_key} if run_key else {}
    try:
        run_id = launcher.launch(job_id=job_id, product_id=product_id, options=options, **extra)
    except Exception as exc:  # any launch failure at all must not strand the job
        _fail_unlaunched(job_id, exc, settings=settings)
        if isinstance(exc, CatwalkError):
            raise  # already says what went wrong, in words (and types) callers know
        raise LaunchError(
            f"job {job_id} could not be started: {describe(exc)}", job_id=job_id
        ) from exc
    if run_id:
        # The run names itself too when it starts (start_job): the same id either way.
        with session_scope(settings) as session:
            session.execute(
                update(VideoJob).where(VideoJob.id == job_id).values(flow_run_id=run_id)
            )


def _fail_unlaunched(job_id: str, exc: BaseException, *, settings: Settings) -> None:
    """A job whose run never started is FAILED (not PENDING forever) and gives back its
    generation, so the product can be submitted again at once."""
    lifecycle.end_job(
        job_id,
        JobStatus.FAILED,
        f"could not start the job: {describe(exc)}",
        step="submit",
        settings=settings,
        webhook_attempts=1,  # the caller is waiting; housekeeping retries the event
        failure=FailureKind.NOT_STARTED,
    )


RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class RetryCost:
    """What re-running a job may still cost: only the steps it has not paid for yet."""

    amount: Decimal | None  # None when no price is configured for a step still to do
    images_to_make: int
    video_to_make: bool
    note: str = ""


def retry_cost(
    job_id: str, *, settings: Settings | None = None, new_keyframes: bool = False
) -> RetryCost:
    """Estimate, from the price list, what a retry of the job would pay for.

    Stored keyframes are reused; a video already stored, or a provider request already
    accepted (re-attached, not resubmitted), costs nothing more. With ``new_keyframes`` it
    is both keyframes and the video, made again.
    """
    settings = settings or get_settings()
    if new_keyframes:
        with session_scope(settings) as session:
            _job_or_error(session, job_id)
        try:
            amount = pricing.estimate_calls_cost(settings, images=len(POSES), video=True)
            return RetryCost(amount, len(POSES), True)
        except ConfigError as exc:
            return RetryCost(None, len(POSES), True, note=exc.user_message)
    with session_scope(settings) as session:
        job = _job_or_error(session, job_id)
        missing_images = sum(1 for pose in POSES if pose not in job.image_keys)
        video_key, has_request = job.video_key, bool(job.video_request_urls)
    store = factory.blob_store(settings)
    video_stored = video_key is not None and store.head(video_key) is not None
    video_to_make = not video_stored and not has_request
    try:
        amount = pricing.estimate_calls_cost(settings, images=missing_images, video=video_to_make)
    except ConfigError as exc:
        return RetryCost(None, missing_images, video_to_make, note=exc.user_message)
    return RetryCost(amount, missing_images, video_to_make)


def _job_or_error(session: Any, job_id: str) -> VideoJob:
    job = queries.get_job(session=session, job_id=job_id)
    if job is None:
        raise InputError(f"unknown job {job_id!r}")
    return job


def _new_keyframes_estimate(settings: Settings) -> Decimal:
    # The whole job's estimate: both keyframes, their check and the video, bought again.
    return pricing.estimate_job_cost(settings)


def retry_job(
    job_id: str,
    *,
    settings: Settings | None = None,
    launcher: Launcher | None = None,
    new_keyframes: bool = False,
) -> Submission:
    """Re-run a FAILED or CANCELLED job under the same id, reusing what it paid for.

    The job goes back to PENDING at 0 % (its steps skip ahead over stored keyframes and
    re-attach to a saved video request) and a new flow run starts for it. With
    ``new_keyframes`` nothing is reused: new keyframes (another take of each) and a new video
    are bought, the way past a video model that refused the old frames.
    """
    settings = settings or get_settings()
    estimate = _new_keyframes_estimate(settings) if new_keyframes else None
    with session_scope(settings) as session:
        product_id, options, generation = jobs.reset_for_retry(
            session=session, job_id=job_id, new_keyframes=estimate
        )
    launch_job(
        job_id,
        product_id,
        options,
        run_key=f"job-{job_id}-retry-{generation}",
        settings=settings,
        launcher=launcher,
    )
    return Submission(
        job_id=job_id, status=JobStatus.PENDING, created=True, estimated_time=ESTIMATED_JOB_SECONDS
    )


def cancel_job(job_id: str, *, settings: Settings | None = None) -> JobStatus:
    """Ask a job to stop; returns its status afterwards.

    A job that never started (PENDING, no step begun) ends CANCELLED at once, so a run that
    starts later finds it final and does nothing. A running job gets ``cancel_requested``;
    its video step checks it while it waits and stops with ``JobCancelled``.
    """
    settings = settings or get_settings()
    with session_scope(settings) as session:
        status, ended = jobs.cancel(
            session=session, job_id=job_id, webhook=settings.webhooks_enabled
        )
    if ended is not None:
        # One POST: an admin is waiting on the answer; housekeeping retries the event.
        lifecycle.after_commit(ended, settings=settings, webhook_attempts=1)
    return status
