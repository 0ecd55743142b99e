"""Jobs whose flow run was lost (its worker or process died) resume within a minute.

The heartbeat automation (deployments/stack.py) marks a silent run Crashed; ``catwalk
worker`` calls ``resume_lost_runs`` every 30 s, which schedules that same run again (it
resumes from the job's stored keyframes and saved provider request) and shows the admin
"worker lost, resuming" instead of a stale provider position. A run left Pending by a
worker that died after claiming it is scheduled again the same way. Housekeeping does the same
for its own checks; both count re-attachments in the same job events (MAX_REATTACH).
"""

from __future__ import annotations

import logging
import uuid

from catwalk.db import queries, session_scope
from catwalk.db.base import utcnow
from catwalk.tasks.housekeeping import _REATTACH, MAX_REATTACH, _fail, _note, _reattachments

LOST = "worker lost, resuming"
logger = logging.getLogger(__name__)


# A run a worker claimed (Pending, "Submitting") and then died with never starts and sends
# no heartbeat; it also holds a place in the pool's limit. Found in bench/drills.py.
PENDING_LOST_SECONDS = 150


def resume_lost_runs(*, pending_after_seconds: float = PENDING_LOST_SECONDS) -> list[str]:
    """Schedule again the crashed runs of jobs still in flight, and runs stuck Pending
    (claimed by a worker that died) for ``pending_after_seconds``; returns their job ids."""
    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    with session_scope() as session:
        rows = [
            (job.id, job.flow_run_id)
            for job in queries.active_jobs(session=session, created_before=utcnow())
            if job.flow_run_id
        ]
    resumed: list[str] = []
    with get_client(sync_client=True) as client:
        for job_id, run_id in rows:
            try:
                run = client.read_flow_run(uuid.UUID(str(run_id)))
            except (ObjectNotFound, ValueError):
                continue  # housekeeping relaunches vanished runs
            if run.state is None:
                continue
            stuck_pending = (
                run.state.type is StateType.PENDING
                and (utcnow() - run.state.timestamp).total_seconds() >= pending_after_seconds
            )
            if run.state.type is not StateType.CRASHED and not stuck_pending:
                continue
            done = _reattachments(job_id)
            if done >= MAX_REATTACH:
                _fail(
                    job_id, f"the run of this job crashed {done + 1} times (worker or process died)"
                )
                continue
            client.set_flow_run_state(run.id, Scheduled(), force=True)
            _note(
                job_id,
                f"flow run {run.id} lost ({run.state.message or 'crashed'}); "
                f"scheduled again ({done + 1}/{MAX_REATTACH})",
                step=_REATTACH,
                wait_reason=LOST,
                current_step=LOST,
                queue_position=None,
            )
            resumed.append(job_id)
    if resumed:
        logger.warning("%s: %s", LOST, ", ".join(resumed))
    return resumed
