"""Ending a job, with what comes after the database: the one place every path calls.

``end_job`` ends the job in one transaction (``db.jobs.end_job``: status, one-line reason,
reservation, alert, webhook event, timeline), retried through a database outage, then
cancels the provider request the job left open and delivers the job_failed alert and the
completion webhook. The flow, housekeeping, a failed launch, the admin's cancel and retry
(CLI, API, dashboard) all go through here.

``close_provider_request`` is idempotent and safe to repeat: housekeeping calls it for an
ended job whose request is still open (a worker died between the commit and the cancel).
"""

from __future__ import annotations

import logging
from decimal import Decimal

from catwalk import pricing
from catwalk.config import Settings, get_settings
from catwalk.db import jobs, queries, retry_db, session_scope
from catwalk.db.jobs import Ended
from catwalk.domain import JobStatus, SubmittedRequest
from catwalk.failures import FailureKind

logger = logging.getLogger(__name__)


def end_job(
    job_id: str,
    outcome: JobStatus,
    reason: str | None = None,
    *,
    step: str | None = None,
    settings: Settings | None = None,
    webhook_attempts: int | None = None,
    failure: FailureKind | BaseException | None = None,
) -> Ended | None:
    """End the job (None if it had already ended), then close what it left at the provider.

    ``failure`` classes a FAILED ending (``catwalk.failures``). ``webhook_attempts`` caps the webhook's POSTs now (a front door passes 1 so nobody waits
    out the backoff; housekeeping sends the rest).
    """
    settings = settings or get_settings()

    def _end() -> Ended | None:
        with session_scope(settings) as session:
            return jobs.end_job(
                session=session,
                job_id=job_id,
                outcome=outcome,
                reason=reason,
                step=step,
                webhook=settings.webhooks_enabled,
                failure=failure,
            )

    ended = retry_db(_end, settings=settings)
    if ended is None:
        return None
    after_commit(ended, settings=settings, webhook_attempts=webhook_attempts)
    return ended


def after_commit(
    ended: Ended, *, settings: Settings | None = None, webhook_attempts: int | None = None
) -> None:
    """Cancel the open provider request, deliver the alert and the webhook; failures are
    logged only (housekeeping repeats all three: the request stays "open", the alert and
    the event undelivered)."""
    settings = settings or get_settings()
    if ended.suspended_run:
        cancel_suspended_run(ended.suspended_run, f"job {ended.status.value.lower()}", settings)
    if ended.open_request:
        try:
            close_provider_request(ended.job_id, settings=settings)
        except Exception:
            logger.exception("job %s: closing its provider request failed", ended.job_id)
    if ended.alert_id:
        from catwalk.alerting import deliver_alert

        try:
            deliver_alert(ended.alert_id, settings=settings)
        except Exception:
            logger.exception("job %s: delivering its alert failed", ended.job_id)
    if ended.webhook_id:
        from catwalk.webhooks import deliver_webhook

        try:
            deliver_webhook(ended.webhook_id, settings=settings, attempts=webhook_attempts)
        except Exception:
            logger.exception("job %s: delivering its webhook failed", ended.job_id)


def cancel_suspended_run(flow_run_id: str, why: str, settings: Settings) -> None:
    """Cancel the run a job waited in for review (rejected, expired, cancelled), so Prefect
    does not list it as waiting for ever. Embedded runs are never suspended. Logged only."""
    if settings.launcher != "deployment":
        return
    import uuid

    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(uuid.UUID(flow_run_id))
            if run.state is not None and run.state.type is StateType.PAUSED:
                client.set_flow_run_state(run.id, Cancelled(message=why), force=True)
    except Exception:  # noqa: BLE001 - housekeeping's resume_decided_runs cancels it later
        logger.warning("job's suspended flow run %s could not be cancelled yet", flow_run_id)


def close_provider_request(
    job_id: str,
    *,
    settings: Settings | None = None,
    verdict: str | None = None,
    ended_only: bool = True,
) -> str | None:
    """Cancel the ended job's request at the provider; record what the provider said.

    Returns the request's new state ("cancelled", "billed", "failed", "gone"), or None when
    there was nothing to close or the provider could not be asked (it stays open).
    ``verdict`` is the answer to a cancel the client already sent (then none is sent
    again); ``ended_only=False`` lets a step record that, before its job has ended.
    """
    from catwalk.clients import factory

    settings = settings or get_settings()
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None or not jobs.request_is_open(job):
            return None
        if ended_only and job.status.is_active:
            return None
        submitted = SubmittedRequest.from_dict(job.video_request_urls)
    generator = factory.video_generator(settings)
    closer = getattr(generator, "close_request", None)
    if closer is None:
        state, usage = "cancelled", None  # nothing runs at a provider for this generator
    else:
        state, usage = closer(
            submitted,
            duration_seconds=settings.video_duration_seconds,
            resolution=settings.video_resolution,
            verdict=verdict,
        )
    if state is None:
        return None
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None or not jobs.request_is_open(job):
            return None
        job.video_request_state = state
        amount = Decimal(0)
        note = {
            "cancelled": "cancelled at the provider before it finished: not billed",
            "billed": "the provider finished it after the job ended: billed, video not used",
            "failed": "the provider had already failed it",
            "gone": "the provider no longer knows it",
        }[state]
        if usage is not None:
            price = pricing.charge_for(usage)
            amount = price.amount if state == "billed" else Decimal(0)
            queries.record_usage(
                session=session,
                job_id=job_id,
                usage=usage,
                unit_price=price.unit_price,
                amount=amount,
                price_date=price.price_date,
                attempt=1,
                succeeded=False,
                note=f"request {submitted.request_id}: {note}",
            )
            session.flush()
            jobs.record_late_bill(session=session, job_id=job_id, amount=amount)
        queries.record_event(
            session=session,
            job_id=job_id,
            step="video",
            kind="info",
            message=f"provider request {submitted.request_id}: {note}",
        )
    logger.info("job %s: provider request %s %s", job_id, submitted.request_id, state)
    return state


def delete_pending(*, limit: int = 100) -> tuple[int, int]:
    """Delete files queued for deletion; returns (deleted, still failing).

    Housekeeping calls this on a schedule; publishing calls it right after a switch. A
    failed delete keeps its row (attempts and last error recorded) for the next call. A key
    the database still refers to is never deleted, whatever queued it.
    """
    from catwalk.clients import factory
    from catwalk.errors import CatwalkError

    store = factory.blob_store()
    deleted = failed = 0
    with session_scope() as session:
        todo = [(d.id, d.key) for d in queries.pending_deletions(session=session, limit=limit)]
    for deletion_id, key in todo:
        with session_scope() as session:
            if queries.key_in_use(session=session, key=key):
                queries.record_deletion_attempt(
                    session=session, deletion_id=deletion_id, error=None, note="kept: still in use"
                )
                continue
        error: str | None = None
        try:
            store.delete(key)
        except CatwalkError as exc:
            error = exc.user_message
        with session_scope() as session:
            queries.record_deletion_attempt(session=session, deletion_id=deletion_id, error=error)
        if error is None:
            deleted += 1
        else:
            failed += 1
    return deleted, failed
