"""Retry policy and small helpers shared by catwalk's tasks."""

from __future__ import annotations

import logging
from typing import Any

from prefect.runtime import task_run
from sqlalchemy import event
from sqlalchemy.orm import Session

import pricing
from config import get_settings
from db import queries
from domain import Usage
from errors import is_transient

logger = logging.getLogger(__name__)


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
    from tasks.alerts import check_spend_alerts

    try:
        check_spend_alerts()
    except Exception:  # the call is paid and recorded: an alert problem must not fail it
        logger.exception("spend alert check failed; housekeeping will deliver pending alerts")
