"""One job life cycle: every path that moves a job on goes through these functions.

``begin_step`` starts a step (and refuses a job that already ended), ``record_step_failure``
puts a failed attempt on the timeline, ``end_job`` ends a job, ``reset_for_retry`` makes an
ended job runnable again, and ``check_invariants`` says whether the bookkeeping adds up.

Ending a job does, in the caller's one transaction: the final status with a one-line reason
naming the step ("rendering video: ..."), the day's reservation reconciled, the
``job_failed`` alert recorded (once per failure), the completion webhook's event recorded
(when webhooks are on: once per ending, in this transaction, so no ending goes unreported
and none is reported twice), and an event on the timeline. The
transition is one conditional UPDATE from an active status, so a COMPLETED job never becomes
FAILED and two enders never both win. What cannot happen inside a database transaction (the
HTTP cancel of a provider request still open, the alert's and webhook's delivery) is
returned in ``Ended`` for the caller to do after the commit: ``catwalk.lifecycle`` does it.

Must not import clients, tasks, flows or dashboards.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from catwalk.db import alerts, limits, queries
from catwalk.db.base import new_id, utcnow
from catwalk.db.models import (
    Alert,
    JobEvent,
    LedgerEntry,
    PendingDeletion,
    UsageDay,
    VideoJob,
    WebhookDelivery,
)
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catwalk.config import get_settings
from catwalk.domain import ACTIVE_STATUSES, POSES, REVIEW_DECISIONS, JobStatus
from catwalk.errors import InputError, JobAlreadyEnded, ReviewConflict
from catwalk.failures import FailureKind, classify
from catwalk.scrub import without_paths

# The step a job is in, named for people: a failure reason starts with it, never with a
# provider's progress text ("Generating frames: 33%") that ``current_step`` may hold.
STEP_NAMES: dict[JobStatus, str] = {
    JobStatus.PENDING: "starting",
    JobStatus.GENERATING_IMAGES: "generating keyframes",
    JobStatus.GENERATING_VIDEO: "rendering video",
    JobStatus.UPLOADING: "publishing video",
    JobStatus.AWAITING_APPROVAL: "review",
}
REVIEW_LABELS = {"keyframes": "the keyframes", "publish": "the video before it goes live"}
ENDINGS = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
# Provider request states after which nothing runs (or bills) at the provider any more.
CLOSED_REQUEST_STATES = frozenset({"collected", "failed", "cancelled", "billed", "gone"})
_EVENT_KIND = {JobStatus.COMPLETED: "succeeded", JobStatus.FAILED: "failed"}
#: The completion webhook's event type for each ending.
WEBHOOK_EVENTS = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}


@dataclass(frozen=True, slots=True)
class Ended:
    """What ending a job did, and what is left for after the commit."""

    job_id: str
    product_id: str
    status: JobStatus
    reason: str | None
    alert_id: str | None  # a new job_failed alert to deliver
    open_request: dict[str, Any] | None  # a provider request still running: cancel it
    webhook_id: str | None = None  # a new completion event to deliver
    suspended_run: str | None = None  # the flow run it waited in for review: cancel it


def one_line(text: str, limit: int = 500) -> str:
    """Collapse driver or provider text (tracebacks, multi-line errors) to one line."""
    flat = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _job(session: Session, job_id: str) -> VideoJob:
    job = session.get(VideoJob, job_id, populate_existing=True)
    if job is None:
        raise InputError(f"unknown job {job_id!r}")
    return job


def request_is_open(job: VideoJob) -> bool:
    """Whether the job's provider request may still be queued or running at the provider."""
    if not job.video_request_urls:
        return False
    if job.video_request_state is None:  # rows from before the state was kept
        return job.provider_video_url is None
    return job.video_request_state not in CLOSED_REQUEST_STATES


def work_started(job: VideoJob) -> dt.datetime | None:
    """When the job's current work began: its start, or its last review decision (a job
    approved after hours of waiting is not overdue, and its time limit starts then)."""
    times = [t for t in (job.started_at, job.reviewed_at) if t is not None]
    return max(times, default=None)


def begin_step(
    *,
    session: Session,
    job_id: str,
    status: JobStatus,
    current_step: str,
    event_step: str,
    attempt: int = 1,
) -> VideoJob:
    """Move a running job into a step; raises ``JobAlreadyEnded`` if another path ended it."""
    job = _job(session, job_id)
    if job.status.is_final:
        raise JobAlreadyEnded(f"job {job_id} is already {job.status.value}")
    if attempt > 1:
        job.retry_count += 1
    queries.set_job_step(session=session, job=job, status=status, current_step=current_step)
    queries.record_event(
        session=session, job_id=job_id, step=event_step, kind="started", attempt=attempt
    )
    return job


def record_step_failure(
    *, session: Session, job_id: str, step: str, message: str, attempt: int = 1
) -> str:
    """Put one failed attempt of a step on the timeline (the job itself stays as it is)."""
    text = one_line(message)
    queries.record_event(
        session=session, job_id=job_id, step=step, kind="failed", message=text, attempt=attempt
    )
    return text


def _generation(session: Session, job_id: str) -> int:
    """How many retries the job has had (0 for its first run)."""
    return int(
        session.scalar(
            select(func.count()).where(JobEvent.job_id == job_id, JobEvent.step == "retry")
        )
        or 0
    )


def failure_alert_key(session: Session, job_id: str) -> str:
    """One job_failed alert per failure: the first run's key, then one per retry."""
    generation = _generation(session, job_id)
    return f"job_failed:{job_id}" if generation == 0 else f"job_failed:{job_id}:retry{generation}"


def record_webhook_event(*, session: Session, job: VideoJob) -> str | None:
    """Record the completion event of a job that just ended; its id (None if already there).

    The body holds storage keys, not URLs: what another system can fetch depends on the
    storage mode and the API's address, which the sender knows and the database does not.
    """
    event = WEBHOOK_EVENTS[job.status]
    generation = _generation(session, job.id)
    dedupe_key = f"{event}:{job.id}" + (f":retry{generation}" if generation else "")
    delivery_id = new_id()
    body = {
        "id": delivery_id,
        "type": event,
        "createdAt": utcnow().isoformat(),
        "data": {
            "jobId": job.id,
            "productId": job.product_id,
            "status": job.status.value,
            "videoKey": job.video_key if job.status is JobStatus.COMPLETED else None,
            "thumbnailKey": job.poster_key if job.status is JobStatus.COMPLETED else None,
            # It leaves the machine, like an API answer: a file's name, never its server path.
            "error": without_paths(job.error_message) if job.error_message else None,
            "cost": {"total": float(job.total_cost)},
        },
    }
    inserted = queries.insert_or_ignore(
        session=session,
        model=WebhookDelivery,
        values={
            "id": delivery_id,
            "event": event,
            "job_id": job.id,
            "dedupe_key": dedupe_key,
            "payload": json.dumps(body, separators=(",", ":")),
            "created_at": utcnow(),
            "delivery_attempts": 0,
        },
        key="dedupe_key",
    )
    return delivery_id if inserted else None


def end_job(
    *,
    session: Session,
    job_id: str,
    outcome: JobStatus,
    reason: str | None = None,
    step: str | None = None,
    webhook: bool | None = None,
    failure: FailureKind | BaseException | None = None,
) -> Ended | None:
    """End an active job as COMPLETED, FAILED or CANCELLED; None if it had already ended.

    ``step`` names where it ended (default: the step its status says); a FAILED reason is
    prefixed with it unless it already starts with it. ``failure`` is the failure's class, or
    the error to class (with the status the job was in: a refusal at the video step is the
    keyframes', at the image step the photo's); kept for ``catwalk.failures.explain``. The ending's completion event is
    recorded in the same transaction when ``webhook`` says so, by default when webhooks are
    configured: a caller that forgets it cannot drop an event.
    """
    if webhook is None:
        webhook = get_settings().webhooks_enabled
    if outcome not in ENDINGS:
        raise ValueError(f"{outcome} is not an ending")
    job = session.get(VideoJob, job_id, populate_existing=True)
    if job is None or job.status.is_final:
        return None
    was_waiting = job.status is JobStatus.AWAITING_APPROVAL
    where = step or STEP_NAMES.get(job.status, "run")
    text: str | None
    if outcome is JobStatus.COMPLETED:
        text = None
    elif outcome is JobStatus.CANCELLED:
        text = one_line(reason or "cancelled by an admin")
    else:
        text = one_line(reason or "failed")
        if not text.startswith(f"{where}:"):
            text = f"{where}: {text}"
    values: dict[str, Any] = {
        "status": outcome,
        "wait_reason": None,
        "awaiting": None,
        "awaiting_since": None,
        "queue_position": None,
        "completed_at": utcnow(),
        "error_message": text,
        "failure_kind": _failure_kind(failure, job.status) if outcome is JobStatus.FAILED else None,
    }
    if outcome is JobStatus.COMPLETED:
        values |= {"progress": 100, "current_step": "completed"}
    else:
        values["current_step"] = "cancelled" if outcome is JobStatus.CANCELLED else "failed"
    # The one transition: from an active status only, whoever else tries at the same time.
    claimed = session.execute(
        update(VideoJob)
        .where(VideoJob.id == job_id, VideoJob.status.in_(ACTIVE_STATUSES))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        return None
    session.refresh(job)
    queries.record_event(
        session=session,
        job_id=job_id,
        step=where,
        kind=_EVENT_KIND.get(outcome, "cancelled"),
        message=text or "",
    )
    limits.reconcile_job(session=session, job_id=job_id)
    alert_id = None
    if outcome is JobStatus.FAILED:
        alert_id = alerts.record_alert(
            session=session,
            kind="job_failed",
            dedupe_key=failure_alert_key(session, job_id),
            message=f"video job {job_id} for product {job.product_id} failed: {text}",
            job_id=job_id,
        )
    open_request = (
        dict(job.video_request_urls)
        if outcome is not JobStatus.COMPLETED and request_is_open(job)
        else None
    )
    return Ended(
        job_id=job_id,
        product_id=job.product_id,
        status=outcome,
        reason=text,
        alert_id=alert_id,
        open_request=open_request,
        webhook_id=record_webhook_event(session=session, job=job) if webhook else None,
        suspended_run=job.flow_run_id if was_waiting else None,
    )


def _failure_kind(failure: FailureKind | BaseException | None, stage: JobStatus) -> str | None:
    if failure is None:
        return None  # explained as "unknown": every action offered
    if isinstance(failure, FailureKind):
        return failure.value
    return classify(failure, stage=stage).value


def open_review(
    *, session: Session, job_id: str, point: str, quote: Decimal
) -> tuple[VideoJob, bool]:
    """Stop the job at a review point: AWAITING_APPROVAL, with what it waits for, since when
    and what approving would still cost. Returns (job, opened now); a run of the same round
    coming back to the point (a resumed run, a re-run) finds it already open: it keeps its
    "since", and only its status is put back (the steps before the point set their own)."""
    job = _job(session, job_id)
    if job.status.is_final:
        raise JobAlreadyEnded(f"job {job_id} is already {job.status.value}")
    label = REVIEW_LABELS[point]
    opened = job.awaiting != point  # a decision clears it: set means still undecided
    job.status = JobStatus.AWAITING_APPROVAL
    job.current_step = job.wait_reason = f"waiting for approval of {label}"
    job.queue_position = None
    if not opened:
        return job, False
    job.awaiting = point
    job.awaiting_since = utcnow()
    job.review_quote = quote
    queries.record_event(
        session=session,
        job_id=job_id,
        step="review",
        kind="info",
        message=f"waiting for approval of {label} (round {job.review_round + 1}; "
        f"approving costs ${quote:.4f} more)",
    )
    return job, True


@dataclass(frozen=True, slots=True)
class Decided:
    """A review decision that was taken: what it was, and what is left after the commit."""

    job_id: str
    product_id: str
    point: str
    decision: str
    flow_run_id: str | None
    options: dict[str, Any]
    round: int
    ended: Ended | None = None  # set for a rejection: the job ended CANCELLED


def decide_review(
    *,
    session: Session,
    job_id: str,
    decision: str,
    by: str,
    note: str = "",
    point: str | None = None,
    webhook: bool | None = None,
) -> Decided:
    """Take an admin's decision on a waiting job, once: of two admins deciding at the same
    moment one wins and the other gets ``ReviewConflict``.

    ``approve`` and ``regenerate-*`` make the job PENDING again (a regenerated frame is
    dropped from the job, remade under the same key, and a new round asks again);
    ``reject`` ends it CANCELLED
    with its reservation reconciled (what it did not spend is given back) and, at the
    publish point, queues the unapproved video and poster for deletion. ``point`` (when
    given) is the point the decider saw: a decision meant for another one is refused.
    """
    if decision not in REVIEW_DECISIONS:
        raise InputError(f"decision must be one of {', '.join(REVIEW_DECISIONS)}, not {decision!r}")
    job = _job(session, job_id)
    if job.status is not JobStatus.AWAITING_APPROVAL or job.awaiting is None:
        raise ReviewConflict(_not_waiting(job))
    waiting_at, round_ = job.awaiting, job.review_round
    if point is not None and point != waiting_at:
        raise ReviewConflict(f"job {job_id} waits for review of {REVIEW_LABELS[waiting_at]} now")
    if decision.startswith("regenerate") and waiting_at != "keyframes":
        raise InputError("only keyframes can be regenerated; reject the video to start over")
    now = utcnow()
    values: dict[str, Any] = {
        "awaiting": None,
        "awaiting_since": None,
        "reviewed_at": now,
        "review_round": round_ + 1,
        "wait_reason": None,
    }
    if decision != "reject":
        values["status"] = JobStatus.PENDING
        values["current_step"] = (
            "approved, resuming"
            if decision == "approve"
            else f"remaking the {decision.removeprefix('regenerate-')} keyframe"
        )
    # The one decision: from this exact waiting point and round, whoever else decides now.
    claimed = session.execute(
        update(VideoJob)
        .where(
            VideoJob.id == job_id,
            VideoJob.status == JobStatus.AWAITING_APPROVAL,
            VideoJob.awaiting == waiting_at,
            VideoJob.review_round == round_,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        raise ReviewConflict(_not_waiting(_job(session, job_id)))
    session.refresh(job)
    record = {"point": waiting_at, "decision": decision, "by": by, "at": now.isoformat()}
    if note:
        record["note"] = one_line(note, 300)
    review = _with_decision(job, record)
    if decision == "approve":
        review["approved"] = sorted({*review.get("approved", []), waiting_at})
    if decision.startswith("regenerate"):
        pose = decision.removeprefix("regenerate-")
        keys = dict(job.image_keys)
        keys.pop(pose, None)  # the remade frame is stored under the same key
        job.image_keys = keys
        remake = dict(review.get("remake", {}))
        takes = int(remake.get(pose, {}).get("variant", 0)) + 1
        remake[pose] = {"variant": takes, "feedback": [record["note"]] if note else []}
        review["remake"] = remake
    job.review = review
    label = REVIEW_LABELS[waiting_at]
    said = {"approve": "approved", "reject": "rejected"}.get(decision, decision)
    queries.record_event(
        session=session,
        job_id=job_id,
        step="review",
        kind="info",
        message=f"{label} {said} by {by}" + (f": {record['note']}" if note else ""),
    )
    ended = None
    if decision == "reject":
        reason = f"rejected at review of {label} by {by}" + (f": {record['note']}" if note else "")
        ended = _cancel_reviewed(session, job, waiting_at, reason, webhook)
    return Decided(
        job_id=job_id,
        product_id=job.product_id,
        point=waiting_at,
        decision=decision,
        flow_run_id=job.flow_run_id,
        options=dict(job.options),
        round=round_,
        ended=ended,
    )


def _with_decision(job: VideoJob, record: dict[str, Any]) -> dict[str, Any]:
    """The job's review record with one more decision (a new dict: the column is JSON)."""
    review = dict(job.review or {})
    review["decisions"] = [*review.get("decisions", []), record]
    return review


def _cancel_reviewed(
    session: Session, job: VideoJob, point: str, reason: str, webhook: bool | None
) -> Ended | None:
    """End a reviewed job CANCELLED (rejected, expired). A video never approved is never
    published: its files are queued for deletion (one the product shows is kept:
    key_in_use guards it)."""
    if point == "publish":
        for key in (job.video_key, job.poster_key):
            if key:
                session.add(PendingDeletion(key=key, reason=f"unapproved video of job {job.id}"))
        job.video_key = job.poster_key = None
    session.flush()
    return end_job(
        session=session,
        job_id=job.id,
        outcome=JobStatus.CANCELLED,
        reason=reason,
        step="review",
        webhook=webhook,
    )


def expire_review(
    *,
    session: Session,
    job_id: str,
    cutoff: dt.datetime,
    hours: float,
    webhook: bool | None = None,
) -> Ended | None:
    """End CANCELLED a job still waiting since before ``cutoff``; None if it was decided
    meanwhile (the claim is conditional, like a decision)."""
    point = _job(session, job_id).awaiting
    if point is None:
        return None
    claimed = session.execute(
        update(VideoJob)
        .where(
            VideoJob.id == job_id,
            VideoJob.status == JobStatus.AWAITING_APPROVAL,
            VideoJob.awaiting == point,
            VideoJob.awaiting_since < cutoff,
        )
        .values(review_round=VideoJob.review_round + 1)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        return None
    job = _job(session, job_id)
    job.review = _with_decision(
        job, {"point": point, "decision": "expired", "by": "catwalk", "at": utcnow().isoformat()}
    )
    reason = f"review expired: nobody decided on {REVIEW_LABELS[point]} within {hours:g} h"
    return _cancel_reviewed(session, job, point, reason, webhook)


def _not_waiting(job: VideoJob) -> str:
    last = (job.review or {}).get("decisions", [])
    if job.status is JobStatus.AWAITING_APPROVAL:
        return f"job {job.id} was decided a moment ago and waits again: reload it"
    if last:
        d = last[-1]
        return (
            f"job {job.id} is not waiting for a decision: {d['decision']} by {d['by']} "
            f"already decided it ({job.status.value})"
        )
    return f"job {job.id} is {job.status.value}: it is not waiting for a decision"


def record_late_bill(*, session: Session, job_id: str, amount: Decimal) -> None:
    """A ledger row added after the job was reconciled also moves the day's reservation,
    so reservations keep matching the ledger."""
    queries.refresh_job_costs(session=session, job_id=job_id)
    job = _job(session, job_id)
    if job.cost_reconciled_at is not None and job.usage_day is not None and amount:
        day = session.get(UsageDay, job.usage_day, with_for_update=True, populate_existing=True)
        if day is not None:
            day.reserved_cost += amount
    session.flush()


def reset_for_retry(
    *, session: Session, job_id: str, new_keyframes: Decimal | None = None
) -> tuple[str, dict[str, Any], int]:
    """Make a FAILED or CANCELLED job PENDING again; returns (product id, options, retry n).

    Its reservation is put back to the estimate (the next ending reconciles it again), and a
    provider request that can no longer give a video is forgotten so a new one is made.
    ``new_keyframes`` (what new keyframes and a video are estimated to cost) forgets the
    keyframes and the video too, so the run pays for them again, and reserves that much more.
    """
    job = _job(session, job_id)
    if job.status not in RETRYABLE:
        raise InputError(
            f"job {job_id} is {job.status.value}: only failed or cancelled jobs can be retried"
        )
    running = queries.active_job_for(session=session, product_id=job.product_id)
    if running is not None:
        raise InputError(f"product {job.product_id} already has job {running.id} in progress")
    generation = _generation(session, job_id) + 1
    if new_keyframes is not None:
        _forget_keyframes(session, job, new_keyframes)
    if job.cost_reconciled_at is not None and job.usage_day is not None:
        day = session.get(UsageDay, job.usage_day, with_for_update=True, populate_existing=True)
        if day is not None:
            day.reserved_cost += job.estimated_cost - job.total_cost
            calls = session.scalar(select(func.count()).where(LedgerEntry.job_id == job_id)) or 0
            if calls == 0:  # its generation was given back when it ended
                day.generations += 1
        job.cost_reconciled_at = None
    if job.video_request_state in ("failed", "cancelled", "billed", "gone"):
        job.video_request_id = None
        job.video_request_urls = {}
        job.video_request_state = None
    job.status = JobStatus.PENDING
    job.progress = 0
    job.current_step = f"queued (retry {generation})"
    job.wait_reason = None
    job.error_message = job.failure_kind = None
    job.cancel_requested = False
    job.requested_at = utcnow()  # the retry's click: its elapsed time starts here
    job.started_at = None
    job.completed_at = None
    job.queue_position = None
    job.flow_run_id = None
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        # Another submission won the race for the product's one active slot.
        raise InputError(f"product {job.product_id} already has a job in progress") from exc
    queries.record_event(
        session=session,
        job_id=job_id,
        step="retry",
        kind="info",
        message=f"retry {generation} requested",
    )
    return job.product_id, dict(job.options), generation


def _forget_keyframes(session: Session, job: VideoJob, estimate: Decimal) -> None:
    if request_is_open(job):
        # Forgetting it would lose track of a video the provider may still bill.
        raise InputError(
            f"job {job.id}'s video request is still being closed at the provider; "
            "try again in a minute"
        )
    live = {job.product.video_key, job.product.poster_key}  # never the video on the page
    for key in (job.video_key, job.poster_key):
        if key and key not in live:
            session.add(PendingDeletion(key=key, reason=f"replaced by new keyframes of {job.id}"))
    review = copy.deepcopy(job.review or {})
    remake = review.setdefault("remake", {})
    for pose in POSES:
        # Another take of each frame (the offline provider draws it differently too).
        remake[pose] = {"variant": int(remake.get(pose, {}).get("variant", 0)) + 1, "feedback": []}
    job.review = review
    job.image_keys, job.image_request_ids = {}, {}
    job.video_key = job.poster_key = job.provider_video_url = None
    job.video_duration_seconds = None
    job.video_request_id, job.video_request_urls, job.video_request_state = None, {}, None
    job.estimated_cost = job.total_cost + estimate


def cancel(
    *, session: Session, job_id: str, webhook: bool | None = None
) -> tuple[JobStatus, Ended | None]:
    """An admin's cancel: a job no step has begun ends CANCELLED now; a running one is
    asked to stop (its steps check ``cancel_requested`` and end it). Returns its status."""
    job = _job(session, job_id)
    if job.status.is_final:
        return job.status, None
    # Set first, in this transaction: a worker moving the job on at the same moment either
    # finds it CANCELLED or is told through cancel_requested; never neither.
    session.execute(
        update(VideoJob)
        .where(VideoJob.id == job_id)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    waiting = job.status is JobStatus.AWAITING_APPROVAL
    if waiting or (job.status is JobStatus.PENDING and job.started_at is None):
        # Nothing runs for a job that waits for review: it ends now (Ended.suspended_run
        # tells lifecycle.after_commit to cancel its suspended run in Prefect).
        ended = end_job(
            session=session,
            job_id=job_id,
            outcome=JobStatus.CANCELLED,
            reason="cancelled by an admin",
            step="cancel",
            webhook=webhook,
        )
        if ended is not None:
            return JobStatus.CANCELLED, ended
    queries.record_event(
        session=session, job_id=job_id, step="cancel", kind="info", message="cancel requested"
    )
    return _job(session, job_id).status, None


def check_invariants(
    *, session: Session, now: dt.datetime | None = None, grace_seconds: float = 120
) -> list[str]:
    """What does not add up, one line each (empty when everything does):

    - every job is ended or in flight with a run (past ``grace_seconds`` of being submitted);
    - every ended job's reservation is reconciled, and each day's reserved cost equals the
      ledger spend of its ended jobs plus the estimates of its jobs in flight;
    - every FAILED job has its job_failed alert;
    - no ended job leaves a provider request queued or running.
    """
    now = now or utcnow()
    problems: list[str] = []
    jobs = session.scalars(select(VideoJob).execution_options(populate_existing=True)).all()
    spend = dict(
        session.execute(
            select(LedgerEntry.job_id, func.coalesce(func.sum(LedgerEntry.amount), 0))
            .where(LedgerEntry.job_id.is_not(None))
            .group_by(LedgerEntry.job_id)
        ).all()
    )
    calls = dict(
        session.execute(
            select(LedgerEntry.job_id, func.count())
            .where(LedgerEntry.job_id.is_not(None))
            .group_by(LedgerEntry.job_id)
        ).all()
    )
    alert_keys = set(session.scalars(select(Alert.dedupe_key).where(Alert.kind == "job_failed")))
    expected: dict[dt.date, tuple[Decimal, int]] = {}
    for job in jobs:
        ended = job.status.is_final
        age = (now - job.created_at).total_seconds()
        if not ended and job.flow_run_id is None and age > grace_seconds:
            problems.append(f"job {job.id} is {job.status.value} with no flow run")
        if ended and job.usage_day is not None and job.cost_reconciled_at is None:
            problems.append(f"job {job.id} ended {job.status.value} but was not reconciled")
        if job.status is JobStatus.FAILED and failure_alert_key(session, job.id) not in alert_keys:
            problems.append(f"job {job.id} FAILED without a job_failed alert")
        if ended and request_is_open(job):
            problems.append(
                f"job {job.id} ended {job.status.value} but its provider request "
                f"{job.video_request_id} is still open"
            )
        if job.usage_day is None:
            continue
        cost, count = expected.get(job.usage_day, (Decimal(0), 0))
        if job.cost_reconciled_at is None:
            cost, count = cost + job.estimated_cost, count + 1
        else:
            cost += Decimal(spend.get(job.id, 0))
            given_back = calls.get(job.id, 0) == 0 and job.status is not JobStatus.COMPLETED
            count += 0 if given_back else 1
        expected[job.usage_day] = (cost, count)
    for day in session.scalars(select(UsageDay).execution_options(populate_existing=True)):
        cost, count = expected.get(day.day, (Decimal(0), 0))
        if abs(day.reserved_cost - cost) > Decimal("0.000001"):
            problems.append(
                f"{day.day}: reserved {day.reserved_cost:.6f} but the ledger and estimates "
                f"say {cost:.6f}"
            )
        if day.generations != count:
            problems.append(f"{day.day}: {day.generations} generations counted for {count} jobs")
    return problems
