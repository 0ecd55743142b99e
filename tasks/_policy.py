"""Retry policy and small helpers shared by catwalk's tasks."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from catwalk.db import queries, retry_db, session_scope
from prefect.runtime import task_run
from sqlalchemy import event
from sqlalchemy.orm import Session

from catwalk import pricing
from catwalk.config import Settings, get_settings
from catwalk.domain import Usage
from catwalk.errors import is_transient

if TYPE_CHECKING:
    from prefect import Task

logger = logging.getLogger(__name__)
_F = TypeVar("_F", bound=Callable[..., Any])

# A provider's retry hint is honoured up to this long; a longer one (a daily quota) is left
# to the backoff and the retry budget rather than parking a worker for it.
MAX_RETRY_HINT_SECONDS = 120.0


def retry_transient_only(task: Any, task_run_: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry transient failures, fail at once otherwise."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we only classify, never swallow
        if not is_transient(exc):
            return False
        wait_out_retry_hint(exc)
        return True
    return False


def wait_out_retry_hint(
    exc: BaseException,
    *,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait what the provider asked (429 RetryInfo / Retry-After) before the retry is scheduled.

    Prefect's retry delays are fixed on the decorator, so the hint is honoured here, on top of
    the backoff. ``RETRY_DELAY_SECONDS=0`` (tests) turns every wait off. Returns the wait.
    """
    settings = settings or get_settings()
    hint = getattr(exc, "retry_after_seconds", None)
    if not hint or settings.retry_delay_seconds <= 0:
        return 0.0
    wait = min(float(hint), MAX_RETRY_HINT_SECONDS)
    sleep(wait)
    return wait


def retry_policy(settings: Settings | None = None) -> dict[str, Any]:
    """The retry options every paid step shares (retries=3, exponential backoff)."""
    settings = settings or get_settings()
    delays = settings.retry_delays()
    return {
        "retries": settings.task_retries,
        "retry_delay_seconds": delays if any(delays) else 0,
        "retry_jitter_factor": 0.5 if any(delays) else None,
        "retry_condition_fn": retry_transient_only,
    }


def apply_retry_policy(*steps: Task[Any, Any], settings: Settings | None = None) -> None:
    """Give the paid steps their retry options from settings, when a flow is built.

    Not on the decorators: those run at import, and no setting is read at import time (a
    process imports before its environment is final: tests, the CLI reading .env). The flow
    body calls the module-level task objects, so their retry attributes are set in place,
    the same attributes ``Task.__init__`` sets from the decorator's arguments.
    """
    policy = retry_policy(settings)
    for step in steps:
        step.retries = policy["retries"]
        step.retry_delay_seconds = policy["retry_delay_seconds"]
        step.retry_jitter_factor = policy["retry_jitter_factor"]
        step.retry_condition_fn = policy["retry_condition_fn"]


def survives_db_outage(fn: _F) -> _F:
    """Run a whole step again after a database outage, for up to ``DB_OUTAGE_SECONDS``.

    Steps are idempotent (stored keyframes, a saved provider request and a stored video are
    reused), so repeating one from the top is safe; the writes right after a payment are
    retried in place (``retry_db``) so nothing paid goes unrecorded. Prefect's own retries
    stay for provider and storage errors.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return retry_db(lambda: fn(*args, **kwargs))

    return run  # type: ignore[return-value]


def wait_reporter(job_id: str) -> Callable[[str | None], None]:
    """An ``on_wait`` callback for ``provider_slot``: shows why the job waits, then clears it."""

    def report(reason: str | None) -> None:
        def write() -> None:
            with session_scope() as session:
                job = queries.get_job(session=session, job_id=job_id)
                if job is not None and job.wait_reason != reason:
                    job.wait_reason = reason

        retry_db(write)

    return report


def attempt() -> int:
    """This task run's attempt number (1 on the first try)."""
    count = task_run.run_count
    return int(count) if count else 1


def charge(
    *, session: Session, job_id: str, usage: Usage, succeeded: bool = True, note: str | None = None
) -> None:
    """Price one provider call and put it in the ledger (job totals follow)."""
    price = pricing.charge_for(usage)
    queries.record_usage(
        session=session,
        job_id=job_id,
        usage=usage,
        unit_price=price.unit_price,
        amount=price.amount,
        price_date=price.price_date,
        attempt=attempt(),
        succeeded=succeeded,
        note=note,
    )
    # Spend alerts look at committed spend, so they run once this transaction commits.
    if not session.info.get("spend_check_pending"):
        session.info["spend_check_pending"] = True
        event.listen(session, "after_commit", _check_spend_after_commit, once=True)


def _check_spend_after_commit(session: Session) -> None:
    session.info.pop("spend_check_pending", None)
    from catwalk.alerting import check_spend_alerts

    try:
        check_spend_alerts()
    except Exception:  # the call is paid and recorded: an alert problem must not fail it
        logger.exception("spend alert check failed; housekeeping will deliver pending alerts")
