"""Provider slots that cannot leak: the database book of held slots and its reconciler.

Why (issue #13): Prefect 3.9 counts a slot before its lease exists in Redis, so a Redis
outage leaks slots, and Redis losing its data loses the leases that would give slots back.
Either way the limit's ``active_slots`` drifts above the number of calls really running
and the queue deadlocks. catwalk therefore writes down every slot it holds (job, run,
host/pid, lease id) and ``reconcile_slots`` sets each limit back to that truth:

1. a holder whose process or run is gone, or whose release failed, is released by its
   lease id (the server gives the slot back if the lease still exists; a lost lease is a
   no-op) and its row dropped; if the lease service still fails, the row stays, counted;
2. a limit whose ``active_slots`` is above its recorded holders is set down to them. Only
   ever *down*, and only when a second read after ``settle_seconds`` agrees, so a slot
   granted between the two reads is not taken from its holder.

Every slot on these limits must be taken through ``provider_slot(..., book=SlotBook)``:
a holder the book does not know about is counted as a leak.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from catwalk.db import session_scope
from catwalk.db import slots as slot_rows
from catwalk.db.models import SlotHolder
from catwalk.db.queries import get_job
from prefect import task
from prefect.cache_policies import NO_CACHE

from catwalk.clients.limits import IMAGE_LIMIT, VIDEO_LIMIT

logger = logging.getLogger(__name__)
_HOST = socket.gethostname()


class DatabaseSlotBook:
    """The ``SlotBook`` of one job: rows in ``slot_holders``."""

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id

    def opening(self, limit: str) -> str | None:
        from prefect.runtime import flow_run

        with session_scope() as session:
            return slot_rows.open_holder(
                session=session,
                limit_name=limit,
                job_id=self.job_id,
                flow_run_id=flow_run.get_id(),
                hostname=_HOST,
                pid=os.getpid(),
            )

    def granted(self, token: str, lease_id: uuid.UUID) -> None:
        with session_scope() as session:
            slot_rows.mark_granted(session=session, holder_id=token, lease_id=str(lease_id))

    def closed(self, token: str, *, released: bool) -> None:
        with session_scope() as session:
            slot_rows.close_holder(session=session, holder_id=token, released=released)

    def reconcile(self) -> None:
        reconcile_slots()


def slot_book(job_id: str) -> DatabaseSlotBook:
    return DatabaseSlotBook(job_id)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_alive(row: SlotHolder, client: Any) -> bool:
    """Is the process that wrote this row still inside its provider call?"""
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    if row.hostname == _HOST and row.pid and not _process_alive(row.pid):
        return False
    if row.job_id:
        with session_scope() as session:
            job = get_job(session=session, job_id=row.job_id)
            if job is None or job.status.is_final:
                return False
    if row.flow_run_id:
        try:
            run = client.read_flow_run(uuid.UUID(row.flow_run_id))
        except ObjectNotFound:
            return False
        if run.state is not None and run.state.type not in (
            StateType.RUNNING,
            StateType.PENDING,
        ):
            return False
    return True


def reconcile_slots(*, settle_seconds: float = 2.0) -> dict[str, Any]:
    """Release dead holders' leases and set each limit's active slots to its live holders."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    report: dict[str, Any] = {"released": 0, "dropped": 0, "corrected": {}}
    with get_client(sync_client=True) as client:
        with session_scope() as session:
            rows = list(slot_rows.list_holders(session=session))
            session.expunge_all()
        for row in rows:
            if not row.release_pending and _holder_alive(row, client):
                continue
            if row.lease_id is not None:
                try:
                    client.release_concurrency_slots_with_lease(uuid.UUID(row.lease_id))
                except Exception as exc:  # noqa: BLE001 - lease service still failing: keep it, counted
                    logger.warning("could not release lease of %r yet (%s)", row, exc)
                    continue
                report["released"] += 1
            with session_scope() as session:
                slot_rows.drop_holder(session=session, holder_id=row.id)
            report["dropped"] += 1

        def over_counted() -> dict[str, tuple[int, int]]:
            with session_scope() as session:
                held = slot_rows.held_counts(session=session)
            found: dict[str, tuple[int, int]] = {}
            for name in (IMAGE_LIMIT, VIDEO_LIMIT):
                try:
                    limit = client.read_global_concurrency_limit_by_name(name)
                except ObjectNotFound:
                    continue
                if limit.active_slots > held.get(name, 0):
                    found[name] = (limit.active_slots, held.get(name, 0))
            return found

        if over_counted():
            time.sleep(settle_seconds)
            for name, (active, held) in over_counted().items():
                client.update_global_concurrency_limit(
                    name, GlobalConcurrencyLimitUpdate(active_slots=held)
                )
                report["corrected"][name] = f"{active} -> {held}"
                logger.warning(
                    "%s showed %d active slots for %d holders: set to %d", name, active, held, held
                )
    return report


@task(name="reconcile-provider-slots", cache_policy=NO_CACHE)
def reconcile_provider_slots() -> dict[str, Any]:
    """Housekeeping: give back provider slots nobody holds (a lease store outage leaks them)."""
    return reconcile_slots()
