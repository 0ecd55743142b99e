"""Housekeeping tasks: jobs whose flow run crashed or vanished, and old files still to delete.

Job state lives in catwalk's database; Prefect holds the runs. These tasks compare the two
and repair the difference, so nothing a worker's death interrupts is lost or paid twice:
a re-attached run resumes from the job's stored keyframes and saved provider request.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from catwalk.db import jobs, queries, session_scope
from catwalk.db.base import utcnow
from catwalk.tasks.publish import delete_pending
from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed, Scheduled

from catwalk import lifecycle
from catwalk.alerting import deliver_pending_alerts
from catwalk.config import get_settings
from catwalk.domain import JobStatus
from catwalk.failures import FailureKind

# A job's crashed run is scheduled again this many times before the job is failed for good.
MAX_REATTACH = 3
_REATTACH = "reattach"
_ENDED_BADLY = {StateType.CRASHED, StateType.FAILED, StateType.CANCELLED}


def _fail(job_id: str, message: str, failure: FailureKind = FailureKind.CRASHED) -> None:
    # The one ending every path shares: reason, reservation, alert, provider request.
    lifecycle.end_job(job_id, JobStatus.FAILED, message, step="run", failure=failure)


def _note(job_id: str, message: str, *, step: str = "run", **changes: Any) -> None:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None:
            return
        for name, value in changes.items():
            setattr(job, name, value)
        queries.record_event(
            session=session, job_id=job_id, step=step, kind="info", message=message
        )


def _reattachments(job_id: str) -> int:
    with session_scope() as session:
        return queries.count_events(session=session, job_id=job_id, step=_REATTACH)


@task(name="reconcile-jobs", cache_policy=NO_CACHE)
def reconcile_jobs(
    grace_seconds: int = 120, launcher: object | None = None
) -> dict[str, list[str]]:
    """Re-attach or fail jobs in flight whose flow run crashed, vanished or never started.

    - no flow run (the launch failed, e.g. the API was down): launch it now;
    - run Crashed (worker or process died), or Running past the job's timeout (killed so
      hard nothing reported it): schedule the *same* run again, up to ``MAX_REATTACH`` runs;
    - run Failed/Cancelled while the job is still in flight: fail the job with the reason;
    - run gone from the API (server database reset): start a fresh run for the same job.
    """
    from catwalk.deployments.launcher import DeploymentLauncher

    logger = get_run_logger()
    settings = get_settings()
    chosen = launcher or DeploymentLauncher(settings)
    now = utcnow()
    with session_scope() as session:
        rows = [
            (j.id, j.product_id, dict(j.options), j.flow_run_id, jobs.work_started(j))
            for j in queries.active_jobs(
                session=session, created_before=now - dt.timedelta(seconds=grace_seconds)
            )
        ]
    report: dict[str, list[str]] = {
        "launched": [],
        "reattached": [],
        "relaunched": [],
        "failed": [],
    }
    with get_client(sync_client=True) as client:
        for job_id, product_id, options, run_id, started_at in rows:
            if run_id is None:
                new_id = chosen.launch(job_id=job_id, product_id=product_id, options=options)  # type: ignore[attr-defined]
                _note(job_id, f"launched by housekeeping as flow run {new_id}", flow_run_id=new_id)
                report["launched"].append(job_id)
                continue
            try:
                run = client.read_flow_run(run_id)  # type: ignore[arg-type]
            except ObjectNotFound:
                count = len(report["relaunched"]) + 1
                new_id = chosen.launch(  # type: ignore[attr-defined]
                    job_id=job_id,
                    product_id=product_id,
                    options=options,
                    run_key=f"job-{job_id}-relaunch-{count}",
                )
                _note(
                    job_id,
                    f"flow run {run_id} vanished; relaunched as {new_id}",
                    flow_run_id=new_id,
                )
                report["relaunched"].append(job_id)
                continue
            state = run.state.type if run.state else None
            overdue = (
                state is StateType.RUNNING
                and started_at is not None
                and (now - started_at).total_seconds()
                > settings.job_timeout_seconds + grace_seconds
            )
            if overdue:
                # Past the flow's own timeout, so nothing is running it any more.
                client.set_flow_run_state(
                    run.id, Crashed(message="no sign of life past the job timeout"), force=True
                )
                state = StateType.CRASHED
            if state is StateType.CRASHED:
                done = _reattachments(job_id)
                if done >= MAX_REATTACH:
                    _fail(
                        job_id,
                        f"the run of this job crashed {done + 1} times (worker or process died)",
                    )
                    report["failed"].append(job_id)
                    continue
                client.set_flow_run_state(run.id, Scheduled(), force=True)
                _note(
                    job_id,
                    f"flow run {run.id} crashed; scheduled again ({done + 1}/{MAX_REATTACH})",
                    step=_REATTACH,
                )
                report["reattached"].append(job_id)
            elif state in _ENDED_BADLY:
                message = (run.state.message if run.state else None) or f"flow run ended {state}"
                _fail(job_id, message)
                report["failed"].append(job_id)
    for kind, ids in report.items():
        if ids:
            logger.info("%s %d job(s): %s", kind, len(ids), ", ".join(ids))
    return report


@task(name="expire-reviews", cache_policy=NO_CACHE)
def expire_reviews() -> dict[str, list[str]]:
    """Cancel jobs left waiting for review past REVIEW_EXPIRES_HOURS (reservation released),
    and move on suspended runs whose job was decided while Prefect could not be told."""
    from catwalk import review

    return {"expired": review.expire(), "resumed": review.resume_decided_runs()}


@task(name="retry-pending-deletions", cache_policy=NO_CACHE)
def retry_pending_deletions(limit: int = 500) -> dict[str, int]:
    """Delete replaced files whose first delete failed; failures stay queued."""
    deleted, failing = delete_pending(limit=limit)
    return {"deleted": deleted, "still_failing": failing}


@task(name="deliver-pending-alerts", cache_policy=NO_CACHE)
def redeliver_alerts(limit: int = 200) -> dict[str, int]:
    """Post alerts whose webhook delivery failed earlier (the webhook was down)."""
    delivered, failing = deliver_pending_alerts(limit=limit)
    return {"delivered": delivered, "still_failing": failing}


@task(name="close-abandoned-requests", cache_policy=NO_CACHE)
def close_abandoned_requests(limit: int = 100) -> dict[str, int]:
    """Cancel provider requests left open by jobs that ended (a worker died between the
    job's end and the cancel), so nothing keeps rendering, and billing, for nobody."""
    from catwalk.db.models import VideoJob
    from sqlalchemy import select

    from catwalk.domain import ACTIVE_STATUSES

    with session_scope() as session:
        ids = [
            job.id
            for job in session.scalars(
                select(VideoJob)
                .where(
                    VideoJob.status.not_in(ACTIVE_STATUSES), VideoJob.video_request_id.is_not(None)
                )
                .order_by(VideoJob.completed_at.desc())
                .limit(limit * 10)
            )
            if jobs.request_is_open(job)
        ][:limit]
    closed = sum(1 for job_id in ids if lifecycle.close_provider_request(job_id) is not None)
    return {"closed": closed, "still_open": len(ids) - closed}


@task(name="check-invariants", cache_policy=NO_CACHE)
def check_invariants() -> list[str]:
    """Log what does not add up after the repairs (``catwalk doctor`` prints the same)."""
    with session_scope() as session:
        problems = jobs.check_invariants(session=session)
    logger = get_run_logger()
    for problem in problems:
        logger.warning("invariant: %s", problem)
    if not problems:
        logger.info("invariants hold")
    return problems
