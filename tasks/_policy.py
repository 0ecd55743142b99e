"""Retry policy and small helpers shared by catwalk's tasks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.runtime import task_run
from sqlalchemy.orm import Session

import pricing
from config import get_settings
from db import queries, session_scope
from domain import Usage
from errors import is_transient


def retry_transient_only(task: Any, task_run_: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry transient failures, fail at once otherwise."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we only classify, never swallow
        return is_transient(exc)
    return False


def retry_policy() -> dict[str, Any]:
    """The decorator arguments every paid step shares (retries=3, exponential backoff)."""
    settings = get_settings()
    delays = settings.retry_delays()
    return {
        "retries": settings.task_retries,
        "retry_delay_seconds": delays if any(delays) else 0,
        "retry_jitter_factor": 0.5 if any(delays) else None,
        "retry_condition_fn": retry_transient_only,
    }


def wait_reporter(job_id: str) -> Callable[[str | None], None]:
    """An ``on_wait`` callback for ``provider_slot``: shows why the job waits, then clears it."""

    def report(reason: str | None) -> None:
        with session_scope() as session:
            job = queries.get_job(session=session, job_id=job_id)
            if job is not None and job.wait_reason != reason:
                job.wait_reason = reason

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
