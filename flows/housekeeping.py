"""Housekeeping: repair jobs whose run crashed or vanished; retry deletions of old files."""

from __future__ import annotations

from catwalk.tasks.housekeeping import (
    check_invariants,
    close_abandoned_requests,
    expire_reviews,
    reconcile_jobs,
    redeliver_alerts,
    retry_pending_deletions,
)
from catwalk.tasks.report import redeliver_webhooks
from catwalk.tasks.slots import reconcile_provider_slots
from prefect import flow


@flow(name="housekeeping", log_prints=False)
def housekeeping(grace_seconds: int = 120) -> dict[str, object]:
    """Re-attach or fail jobs whose run crashed or vanished; cancel requests ended jobs left
    open; retry deletions and alert posts; then check that the bookkeeping adds up."""
    jobs = reconcile_jobs(grace_seconds)
    reviews = expire_reviews()
    requests = close_abandoned_requests()
    deletions = retry_pending_deletions()
    alerts = redeliver_alerts()
    webhooks = redeliver_webhooks()
    slots = reconcile_provider_slots()
    problems = check_invariants()
    return {
        "jobs": jobs,
        "reviews": reviews,
        "requests": requests,
        "deletions": deletions,
        "alerts": alerts,
        "webhooks": webhooks,
        "slots": slots,
        "invariants": problems,
    }


if __name__ == "__main__":
    housekeeping()
