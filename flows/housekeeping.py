"""Housekeeping: repair jobs whose run crashed or vanished; retry deletions of old files."""

from __future__ import annotations

from catwalk.tasks.housekeeping import reconcile_jobs, redeliver_alerts, retry_pending_deletions
from catwalk.tasks.report import redeliver_webhooks
from catwalk.tasks.slots import reconcile_provider_slots
from prefect import flow


@flow(name="housekeeping", log_prints=False)
def housekeeping(grace_seconds: int = 120) -> dict[str, object]:
    """Re-attach or fail jobs whose run crashed or vanished; retry deletions and alert posts."""
    jobs = reconcile_jobs(grace_seconds)
    deletions = retry_pending_deletions()
    alerts = redeliver_alerts()
    webhooks = redeliver_webhooks()
    slots = reconcile_provider_slots()
    return {
        "jobs": jobs,
        "deletions": deletions,
        "alerts": alerts,
        "webhooks": webhooks,
        "slots": slots,
    }


if __name__ == "__main__":
    housekeeping()
