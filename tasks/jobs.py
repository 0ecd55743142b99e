"""Tasks that open and close a job's record: attach a flow run, record success or failure."""

from __future__ import annotations

from typing import Any

from catwalk.db import limits, queries, retry_db, session_scope
from catwalk.tasks._policy import retry_transient_only
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from catwalk import lifecycle, pricing
from catwalk.config import get_settings
from catwalk.domain import JobOptions, JobStatus
from catwalk.errors import JobAlreadyEnded, JobCancelled, describe


# Retried only for transient errors (a database blip): a refusal by the daily limit is final.
@task(
    name="start-job",
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def start_job(product_id: str, options: dict[str, Any] | None, job_id: str | None) -> str | None:
    """Attach this flow run to its job (creating it when run straight from a deployment).

    Returns None when another run already owns the product's job in flight: a second
    "generate" must not start (and pay for) a second job.
    """
    return retry_db(lambda: _start(product_id, options, job_id))


def _start(product_id: str, options: dict[str, Any] | None, job_id: str | None) -> str | None:
    logger = get_run_logger()
    run_id = str(flow_run.id) if flow_run.id else None
    with session_scope() as session:
        if job_id is None:
            # A run started straight from a deployment is a submission too: same limits.
            settings = get_settings()
            job, created = limits.admit_job(
                session=session,
                settings=settings,
                product_id=product_id,
                options=JobOptions.from_mapping(options),
                estimated_cost=pricing.estimate_job_cost(settings),
            )
            if not created and job.flow_run_id not in (None, run_id):
                logger.info("product %s already has job %s in flight", product_id, job.id)
                return None
        else:
            job = queries.get_job(session=session, job_id=job_id)  # type: ignore[assignment]
            if job is None:
                raise ValueError(f"unknown job {job_id!r}")
        if job.status.is_final:
            logger.info("job %s is already %s", job.id, job.status)
            return None
        job.flow_run_id = run_id or job.flow_run_id
        if job.review_mode is None:
            # Fixed for the job's life: a REVIEW change later does not move its goalposts.
            job.review_mode = JobOptions.from_mapping(job.options).review or get_settings().review
        queries.record_event(
            session=session, job_id=job.id, step="run", kind="started", message=f"flow run {run_id}"
        )
        logger.info("job %s for product %s started", job.id, product_id)
        return job.id


@task(name="fail-job", cache_policy=NO_CACHE)
def fail_job(job_id: str, error: BaseException) -> str:
    """End the job FAILED (or CANCELLED, when an admin asked) with a one-line reason naming
    the step; the product keeps its video. ``catwalk.lifecycle.end_job`` does the rest."""
    message = describe(error)
    if isinstance(error, JobAlreadyEnded):
        return message  # another path ended it, with its own reason

    def cancel_asked() -> bool:
        with session_scope() as session:
            job = queries.get_job(session=session, job_id=job_id)
            return job is not None and job.cancel_requested

    if retry_db(cancel_asked) or isinstance(error, JobCancelled):
        ended = lifecycle.end_job(job_id, JobStatus.CANCELLED, "cancelled by an admin")
    else:
        ended = lifecycle.end_job(job_id, JobStatus.FAILED, message, failure=error)
    if ended is not None:
        get_run_logger().error("job %s %s: %s", job_id, ended.status.value.lower(), ended.reason)
    return message
