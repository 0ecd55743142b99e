"""Tasks of the nightly batch: find products that need a video and start a job for each."""

from __future__ import annotations

import datetime as dt

from catwalk.db import queries, session_scope
from catwalk.db.base import utcnow
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from catwalk.config import get_settings
from catwalk.errors import InputError, LimitExceeded


@task(name="find-products-needing-video", cache_policy=NO_CACHE)
def find_products_needing_video(stale_after_days: int, limit: int | None = None) -> list[str]:
    """Products without a video, or whose video is older than ``stale_after_days``."""
    stale_before = utcnow() - dt.timedelta(days=stale_after_days)
    with session_scope() as session:
        return queries.products_needing_video(
            session=session, stale_before=stale_before, limit=limit
        )


@task(name="start-video-jobs", cache_policy=NO_CACHE)
def start_video_jobs(product_ids: list[str], launcher: object | None = None) -> dict[str, object]:
    """Submit a job per product (each becomes its own deployment run), within the daily limit.

    Goes through ``submission.submit_job``, the same path as the CLI and the dashboard, so the
    limits, the one-job-per-product rule and the answer-at-once promise are the same. A
    limit refusal ends the batch cleanly: the rest waits for tomorrow's run.
    """
    from catwalk.deployments.launcher import DeploymentLauncher

    from catwalk.submission import Launcher, submit_job

    logger = get_run_logger()
    settings = get_settings()
    chosen: Launcher = launcher or DeploymentLauncher(settings)  # type: ignore[assignment]
    started: list[str] = []
    in_flight: list[str] = []
    skipped: dict[str, str] = {}
    stopped: str | None = None
    for product_id in product_ids:
        try:
            submission = submit_job(product_id, {}, settings=settings, launcher=chosen)
        except LimitExceeded as exc:
            stopped = exc.user_message
            logger.warning("batch stopped after %d job(s): %s", len(started), stopped)
            break
        except InputError as exc:
            # One product's bad photo must not stop everyone else's video.
            skipped[product_id] = exc.user_message
            logger.warning("product %s skipped: %s", product_id, exc.user_message)
            continue
        (started if submission.created else in_flight).append(submission.job_id)
    logger.info("batch started %d job(s), %d already in flight", len(started), len(in_flight))
    return {"started": started, "in_flight": in_flight, "skipped": skipped, "stopped": stopped}
