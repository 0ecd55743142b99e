"""Dead runs are found and resumed (issue #13): the heartbeat automation ``catwalk worker``
creates, and the re-attachment of a job whose run Prefect marked Crashed."""

from __future__ import annotations

import uuid

from catwalk.db import queries, session_scope
from catwalk.deployments import stack
from catwalk.tasks.recovery import LOST, resume_lost_runs
from prefect import flow, get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed, Pending, Running

from catwalk.domain import JobOptions, JobStatus


@flow(name="stand-in")
def _stand_in() -> None:
    """Never run: only gives the test's flow runs a flow."""


def test_the_heartbeat_automation_is_created_once(prefect_server) -> None:
    stack.ensure_heartbeat_automation()
    stack.ensure_heartbeat_automation()  # `catwalk worker` runs it at every start
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(stack.HEARTBEAT_AUTOMATION)
    trigger = automation.trigger
    assert trigger.posture == "Proactive" and "prefect.flow-run.heartbeat" in trigger.after
    assert trigger.within.total_seconds() == stack.LOST_AFTER_SECONDS
    assert automation.actions[0].type == "change-flow-run-state"
    env = stack.worker_environment(base={})
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(stack.HEARTBEAT_SECONDS)


def _job_with_run(product_id: str, state) -> tuple[str, uuid.UUID]:
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_stand_in, state=state)
    with session_scope() as session:
        queries.upsert_product(session=session, product_id=product_id, name="x", images=["a.jpg"])
        job, _ = queries.create_job(session=session, product_id=product_id, options=JobOptions())
        job.status = JobStatus.GENERATING_VIDEO
        job.wait_reason = "queued at provider (position 1)"
        job.flow_run_id = str(run.id)
        return job.id, run.id


def test_a_crashed_run_is_scheduled_again_and_the_admin_sees_why(prefect_server, settings) -> None:
    lost, lost_run = _job_with_run("lost-tee", Crashed(message=stack.LOST_MESSAGE))
    alive, alive_run = _job_with_run("alive-tee", Running())
    assert resume_lost_runs() == [lost]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(lost_run).state.type is StateType.SCHEDULED
        assert client.read_flow_run(alive_run).state.type is StateType.RUNNING
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=lost)
        assert job.wait_reason == LOST and job.current_step == LOST
        assert job.status is JobStatus.GENERATING_VIDEO  # resumes, not failed
        other = queries.get_job(session=session, job_id=alive)
        assert other.wait_reason == "queued at provider (position 1)"
    assert resume_lost_runs() == []  # scheduled now: nothing more to do


def test_a_run_left_pending_by_a_dead_worker_is_scheduled_again(prefect_server, settings) -> None:
    """A worker killed right after claiming a run leaves it Pending ("Submitting") for good."""
    claimed, claimed_run = _job_with_run("claimed-tee", Pending())
    assert resume_lost_runs() == []  # just claimed: a worker may be starting it
    assert resume_lost_runs(pending_after_seconds=0) == [claimed]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(claimed_run).state.type is StateType.SCHEDULED
