"""Review decisions from every front door (CLI, HTTP API, dashboard), and their expiry.

A decision is one database transition first (``db.jobs.decide_review``: taken once, the
second admin is told who decided), and only then does anything move: an approval or a
remade frame resumes the job's suspended flow run (from a deployment) or starts a new run
for it (embedded mode); a rejection ends the job CANCELLED, gives back what it did not
spend, deletes an unapproved video, and cancels the suspended run in Prefect. If Prefect
cannot be told at that moment, the database already says what was decided and the worker's
reconciler (``resume_decided_runs``) finishes the move.

The flow's side (suspending, the Prefect UI's resume form) is ``catwalk.tasks.review``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from catwalk import lifecycle
from catwalk.config import Settings, get_settings
from catwalk.db import jobs, retry_db, session_scope
from catwalk.db.base import utcnow
from catwalk.db.models import VideoJob
from catwalk.domain import JobStatus
from catwalk.errors import CatwalkError

logger = logging.getLogger(__name__)

# A decision can land between the flow recording AWAITING_APPROVAL and Prefect suspending
# the run (milliseconds): the resume waits this long for the run to be suspendable.
# A person is waiting on the answer: past this the worker's reconciler (every 30 s) does it.
RESUME_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Waiting:
    """A job waiting for review, as the review queue lists it."""

    job_id: str
    product_id: str
    product_name: str
    point: str
    since: dt.datetime
    quote: Decimal
    image_keys: dict[str, str]
    video_key: str | None
    poster_key: str | None
    live_video_key: str | None
    product_photo: str | None  # the photo the job animates (a path or URL)
    expires_at: dt.datetime
    spent: Decimal


def waiting(*, settings: Settings | None = None, limit: int = 200) -> list[Waiting]:
    """Jobs waiting for a decision, oldest first."""
    settings = settings or get_settings()
    hours = dt.timedelta(hours=settings.review_expires_hours)
    with session_scope(settings) as session:
        rows = session.scalars(
            select(VideoJob)
            .where(VideoJob.status == JobStatus.AWAITING_APPROVAL)
            .order_by(VideoJob.awaiting_since, VideoJob.id)
            .limit(limit)
        ).all()
        return [
            Waiting(
                job_id=job.id,
                product_id=job.product_id,
                product_name=job.product.name,
                point=job.awaiting or "keyframes",
                since=job.awaiting_since or job.updated_at,
                quote=job.review_quote or Decimal(0),
                image_keys=dict(job.image_keys),
                video_key=job.video_key,
                poster_key=job.poster_key,
                live_video_key=job.product.video_key,
                product_photo=job.product.images[0] if job.product.images else None,
                expires_at=(job.awaiting_since or job.updated_at) + hours,
                spent=job.total_cost,
            )
            for job in rows
        ]


def count_waiting(*, settings: Settings | None = None) -> int:
    with session_scope(settings) as session:
        return int(
            session.scalar(
                select(func.count()).where(VideoJob.status == JobStatus.AWAITING_APPROVAL)
            )
            or 0
        )


def decide(
    job_id: str,
    decision: str,
    *,
    by: str,
    note: str = "",
    point: str | None = None,
    settings: Settings | None = None,
    launcher: Any | None = None,
) -> jobs.Decided:
    """Take an admin's decision and move the job on. Raises ``ReviewConflict`` when the job
    no longer waits (another admin decided first, it expired or was cancelled)."""
    settings = settings or get_settings()

    def take() -> jobs.Decided:
        with session_scope(settings) as session:
            return jobs.decide_review(
                session=session,
                job_id=job_id,
                decision=decision,
                by=by,
                note=note,
                point=point,
                webhook=settings.webhooks_enabled,
            )

    decided = retry_db(take, settings=settings)
    if decided.ended is not None:
        lifecycle.after_commit(decided.ended, settings=settings, webhook_attempts=1)
        if decided.point == "publish":
            _delete_rejected(settings)
    else:
        _move_on(decided, settings=settings, launcher=launcher)
    return decided


def _delete_rejected(settings: Settings) -> None:
    # An unapproved video's files were queued in the ending's transaction; delete them now
    # (housekeeping retries what fails).
    try:
        lifecycle.delete_pending()
    except CatwalkError as exc:
        logger.warning("deleting rejected files failed (%s); housekeeping will retry", exc)


def _move_on(decided: jobs.Decided, *, settings: Settings, launcher: Any | None) -> None:
    """Resume the job's suspended run (with the decision as its input), or start a run."""
    if settings.launcher == "deployment" and decided.flow_run_id:
        if resume_run(decided.flow_run_id, decided.decision, settings=settings):
            return
        if _run_exists(decided.flow_run_id):
            return  # not suspended yet, or Prefect is down: the reconciler resumes it
    from catwalk.submission import launch_job

    launch_job(
        decided.job_id,
        decided.product_id,
        decided.options,
        run_key=f"job-{decided.job_id}-review-{decided.round + 1}",
        settings=settings,
        launcher=launcher,
    )


def _run_exists(flow_run_id: str) -> bool:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_flow_run(uuid.UUID(flow_run_id))
    except ObjectNotFound:
        return False
    except Exception:  # noqa: BLE001 - Prefect unreachable: keep the run, reconcile later
        logger.warning("Prefect unreachable; the worker's reconciler will resume the run")
    return True


def resume_run(
    flow_run_id: str, decision: str, *, settings: Settings, wait: float = RESUME_WAIT_SECONDS
) -> bool:
    """Resume a suspended run with the decision as its input; False if it is not suspended
    within ``wait`` seconds (or Prefect cannot be reached)."""
    from prefect import get_client
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + wait
    try:
        with get_client(sync_client=True) as client:
            while True:
                run = client.read_flow_run(uuid.UUID(flow_run_id))
                if run.state is not None and run.state.type is StateType.PAUSED:
                    result = client.resume_flow_run(
                        uuid.UUID(flow_run_id), run_input={"decision": decision, "note": ""}
                    )
                    if result.status.value == "ACCEPT":
                        return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.5)
    except Exception:
        logger.exception("resuming flow run %s failed", flow_run_id)
        return False


def expire(*, settings: Settings | None = None, now: dt.datetime | None = None) -> list[str]:
    """End CANCELLED the jobs that waited longer than REVIEW_EXPIRES_HOURS; their ids."""
    settings = settings or get_settings()
    cutoff = (now or utcnow()) - dt.timedelta(hours=settings.review_expires_hours)
    with session_scope(settings) as session:
        due = [
            job.id
            for job in session.scalars(
                select(VideoJob).where(
                    VideoJob.status == JobStatus.AWAITING_APPROVAL,
                    VideoJob.awaiting_since < cutoff,
                )
            )
        ]
    expired: list[str] = []
    for job_id in due:
        with session_scope(settings) as session:
            ended = jobs.expire_review(
                session=session,
                job_id=job_id,
                cutoff=cutoff,
                hours=settings.review_expires_hours,
                webhook=settings.webhooks_enabled,
            )
        if ended is None:
            continue  # decided meanwhile
        lifecycle.after_commit(ended, settings=settings)
        expired.append(job_id)
    if expired:
        # Background work (worker, housekeeping): the files a publish-point expiry queued.
        _delete_rejected(settings)
        logger.info("review expired for %d job(s): %s", len(expired), ", ".join(expired))
    return expired


def resume_decided_runs(*, settings: Settings | None = None) -> list[str]:
    """Resume runs still suspended although their job was decided (Prefect was down when
    the admin decided, or the decision beat the suspension); cancel those whose job ended."""
    settings = settings or get_settings()
    if settings.launcher != "deployment":
        return []
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
            limit=200,
        )
    run_ids = [str(run.id) for run in runs]
    if not run_ids:
        return []
    with session_scope(settings) as session:
        todo = [
            (job.id, job.flow_run_id, job.status, (job.review or {}).get("decisions", []))
            for job in session.scalars(select(VideoJob).where(VideoJob.flow_run_id.in_(run_ids)))
        ]
    moved: list[str] = []
    for job_id, run_id, status, decisions in todo:
        if status is JobStatus.AWAITING_APPROVAL or run_id is None:
            continue
        if status.is_final:
            lifecycle.cancel_suspended_run(run_id, f"job {status.value.lower()}", settings)
        elif decisions and resume_run(run_id, decisions[-1]["decision"], settings=settings, wait=0):
            moved.append(job_id)
    return moved
