"""Review points in the flow: stop for an admin's decision, holding nothing while they look.

``review_gate`` is called from the flow body (Prefect suspends flows, never tasks). At a
point the job's review mode names and no decision has approved yet, the job becomes
AWAITING_APPROVAL with the cost still to pay quoted, then:

- **from a deployment** (a worker runs it) the run is *suspended* (``suspend_flow_run`` with
  ``wait_for_input``): the process exits, no worker slot, provider slot or memory is held,
  and the Prefect UI shows a resume form. A decision from the CLI, the API or the dashboard
  is written to the database first (catwalk/review.py) and then resumes the run; the re-run
  starts from the top, skips everything already paid for, and finds the point approved.
  A decision made in the Prefect UI's form arrives as the run's input and is taken here,
  through the same once-only database transition.
- **in embedded mode** (no deployment, nothing to resume) the run simply ends with the job
  waiting; a decision starts a new run for the job (catwalk/review.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from catwalk.db import jobs, queries, retry_db, session_scope
from catwalk.tasks._policy import retry_transient_only
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput

from catwalk import pricing
from catwalk.config import get_settings
from catwalk.domain import JobStatus, ReviewDecisionKind, ReviewPoint
from catwalk.domain import review_points as domain_review_points
from catwalk.errors import ConfigError, ReviewConflict

Gate = Literal["go", "waiting", "again", "ended"]


class ReviewDecision(RunInput):
    """The Prefect UI's resume form for a job waiting for review."""

    decision: ReviewDecisionKind = "approve"
    note: str = ""


def review_points(job_id: str) -> tuple[ReviewPoint, ...]:
    """The points this job stops at (its own option, else the REVIEW setting it started with)."""

    def read() -> tuple[ReviewPoint, ...]:
        with session_scope() as session:
            job = queries.get_job(session=session, job_id=job_id)
            if job is None:
                return ()
            return domain_review_points(job.review_mode or get_settings().review)

    return retry_db(read)


def quote(point: ReviewPoint) -> Decimal:
    """What approving at ``point`` still costs: the video after the keyframes, nothing after
    the video (an unknown price quotes 0 and says so in the log)."""
    if point == "publish":
        return Decimal(0)
    try:
        return pricing.estimate_calls_cost(get_settings(), images=0, video=True)
    except ConfigError as exc:
        get_run_logger().warning("the video's price is unknown, quoted as $0: %s", exc)
        return Decimal(0)


@task(name="open-review", cache_policy=NO_CACHE, retries=2, retry_condition_fn=retry_transient_only)
def open_review(job_id: str, point: ReviewPoint) -> int | None:
    """Put the job in AWAITING_APPROVAL at ``point``; its review round, or None when this
    point is already approved (a re-run after the decision goes straight on)."""

    def open_() -> int | None:
        with session_scope() as session:
            job = queries.get_job(session=session, job_id=job_id)
            if job is None:
                raise ReviewConflict(f"job {job_id} is gone")
            if point in (job.review or {}).get("approved", []):
                return None
            job, opened = jobs.open_review(
                session=session, job_id=job_id, point=point, quote=quote(point)
            )
            if opened:
                get_run_logger().info(
                    "job %s waits for approval of %s", job_id, jobs.REVIEW_LABELS[point]
                )
            return job.review_round

    return retry_db(open_)


@task(name="take-review-decision", cache_policy=NO_CACHE)
def take_decision(job_id: str, point: ReviewPoint, decision: str, note: str) -> Gate:
    """Take the Prefect UI form's decision, unless a front door already took one."""
    from catwalk import lifecycle

    settings = get_settings()

    def take() -> jobs.Decided | None:
        with session_scope() as session:
            try:
                return jobs.decide_review(
                    session=session,
                    job_id=job_id,
                    decision=decision,
                    by="Prefect UI",
                    note=note,
                    point=point,
                )
            except ReviewConflict as exc:
                get_run_logger().info("the resume form's decision was not taken: %s", exc)
                return None

    decided = retry_db(take)
    if decided is not None and decided.ended is not None:
        lifecycle.after_commit(decided.ended, settings=settings)
    return _after(job_id, point)


def _after(job_id: str, point: ReviewPoint) -> Gate:
    """Where the job stands once a decision was taken, by whoever took it."""

    def read() -> Gate:
        with session_scope() as session:
            job = queries.get_job(session=session, job_id=job_id)
            if job is None or job.status.is_final:
                return "ended"
            if point in (job.review or {}).get("approved", []):
                return "go"
            if job.status is JobStatus.AWAITING_APPROVAL:
                return "waiting"
            return "again"  # a frame to remake, then ask again

    return retry_db(read)


def review_gate(job_id: str, point: ReviewPoint) -> Gate:
    """Stop at ``point`` (one of the job's ``review_points``) until decided: "go" on,
    "again" (remake the keyframes, then call again), "ended" (rejected or cancelled) or
    "waiting" (embedded mode: the run ends, a decision starts a new one). From a deployment
    this suspends the flow run."""
    round_ = open_review(job_id, point)
    if round_ is None:
        return "go"
    from prefect.flow_runs import suspend_flow_run
    from prefect.runtime import deployment

    if deployment.id is None:
        return "waiting"
    from catwalk.tasks.report import report_job

    report_job(job_id)  # the frames (or the video) to look at, in the run's artifacts
    # The key names the round: a re-run of the same round gets the input already given
    # (or suspends again if none was), a new round (after a remade frame) asks anew.
    answer = suspend_flow_run(
        wait_for_input=ReviewDecision,
        key=f"review-{point}-{round_}",
        timeout=None,  # catwalk expires waiting jobs itself (REVIEW_EXPIRES_HOURS)
    )
    return take_decision(job_id, point, answer.decision, answer.note)
