"""Review points on the real stack: ``catwalk worker`` (Prefect server, process work pool,
deployments), jobs submitted with ``catwalk generate --review keyframes``.

A waiting job's run is Suspended in Prefect, with no flow-run process, no pool place and no
provider slot held; an approval from the CLI resumes it to COMPLETED with one video call;
the Prefect UI's resume form (the API call the form makes) decides too; and a job waiting
across a worker restart is still decided and finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from catwalk.db import queries, session_scope
from catwalk.deployments.stack import free_port

from catwalk import catalog
from catwalk.config import Settings
from catwalk.domain import JobStatus
from tests.helpers import operator_env, run_cli, start_worker

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    home: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        self.proc, _ = start_worker(self.port, self.env)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(90)
        self.proc = None

    def cli(self, *args: str) -> str:
        env = {**self.env, "PREFECT_API_URL": self.api, "CATWALK_LAUNCHER": "deployment"}
        return run_cli(*args, env=env, timeout=180)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        # The Prefect server answers 503 while its SQLite database is locked (seen once in
        # CI, at /resume); Prefect's own client and the UI retry that, and so does this.
        for _ in range(10):
            response = httpx.post(f"{self.api}{path}", json=body, timeout=30)
            if response.status_code != 503:
                break
            time.sleep(1)
        response.raise_for_status()
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("review-stack") / "home"
    env = operator_env(
        home,
        KEYFRAME_CHECK="off",
        # Long enough a video step that the approved run's process is seen working.
        OFFLINE_VIDEO_LATENCY_SECONDS="4",
    )
    running = Stack(home=home, port=free_port(), env=env)
    running.start()
    photos = catalog.write_demo_photos(home / "photos")
    for product in ("demo-tee", "demo-dress", "demo-jacket"):
        running.cli("products", "add", product, str(photos[product]), "--id", product)
    try:
        yield running
    finally:
        running.stop()


def _job(stack: Stack, job_id: str) -> Any:
    settings = Settings(CATWALK_HOME=stack.home)  # type: ignore[call-arg]
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        services = sorted(e.service for e in queries.ledger_for_job(session=session, job_id=job_id))
        _ = job.product.video_key
        session.expunge(job)
        return job, services


def _wait_status(stack: Stack, job_id: str, *wanted: JobStatus, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job, services = _job(stack, job_id)
        if job.status in wanted:
            return job, services
        time.sleep(0.5)
    pytest.fail(f"job {job_id} is {job.status} after {timeout:.0f} s: {job.current_step}")


def _run(stack: Stack, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{stack.api}/flow_runs/{run_id}", timeout=30)
    response.raise_for_status()
    return response.json()


def _wait_run(stack: Stack, run_id: str, state_name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = _run(stack, run_id)
        if run["state_name"] == state_name:
            return run
        time.sleep(0.5)
    pytest.fail(f"flow run {run_id} is {run['state_name']}, not {state_name}")


def _engine_processes(stack: Stack) -> list[str]:
    """Command lines of flow-run processes of this stack (found in /proc by their home)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            env = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "prefect.engine" in cmd and f"CATWALK_HOME={stack.home}" in env:
            found.append(cmd)
    return found


def _held_slots(stack: Stack) -> dict[str, int]:
    limits = stack.post("/v2/concurrency_limits/filter", {})
    return {str(limit["name"]): int(limit["active_slots"]) for limit in limits}


def _pool_busy(stack: Stack) -> int:
    runs = stack.post(
        "/flow_runs/filter",
        {
            "work_pools": {"name": {"any_": ["catwalk"]}},
            "flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING"]}}},
        },
    )
    return len(runs)


def test_a_waiting_job_holds_nothing_and_an_approval_finishes_it(stack: Stack) -> None:
    out = stack.cli("generate", "demo-tee", "--review", "keyframes", "--json")
    job_id = json.loads(out)["jobId"]
    job, services = _wait_status(stack, job_id, JobStatus.AWAITING_APPROVAL)
    assert services == ["nano_banana", "nano_banana"]  # keyframes bought, no video
    run = _wait_run(stack, job.flow_run_id, "Suspended")
    assert run["state_type"] == "PAUSED"
    # Nothing held while a person decides: no flow-run process, no pool place, no slot.
    time.sleep(2)
    assert _engine_processes(stack) == []
    assert _pool_busy(stack) == 0
    assert all(active == 0 for active in _held_slots(stack).values()), _held_slots(stack)

    listed = json.loads(stack.cli("review", "--json"))
    assert [(w["jobId"], w["waitingFor"]) for w in listed] == [(job_id, "keyframes")]
    assert listed[0]["approveCost"] >= 0

    said = stack.cli("approve", job_id[:8])
    assert "approved" in said
    # The resumed run is a process again (which also shows the check above could see one).
    deadline = time.monotonic() + 120
    while not _engine_processes(stack):
        assert time.monotonic() < deadline, "the approved run never started a process"
        time.sleep(0.2)
    done, services = _wait_status(stack, job_id, JobStatus.COMPLETED, JobStatus.FAILED)
    assert done.status is JobStatus.COMPLETED, done.error_message
    assert services == ["nano_banana", "nano_banana", "pika"]  # one video call
    assert done.product.video_key == done.video_key
    # The same run resumed. The job row is marked done a moment before the run returns and
    # Prefect records its final state, so wait for that state rather than read it once.
    assert done.flow_run_id == job.flow_run_id
    assert _wait_run(stack, done.flow_run_id, "Completed")["state_type"] == "COMPLETED"


def test_the_prefect_ui_resume_form_decides_too(stack: Stack) -> None:
    out = stack.cli("generate", "demo-dress", "--review", "keyframes", "--json")
    job_id = json.loads(out)["jobId"]
    job, _ = _wait_status(stack, job_id, JobStatus.AWAITING_APPROVAL)
    run = _wait_run(stack, job.flow_run_id, "Suspended")
    # The form the UI draws comes from the run's input schema; submitting it is this call.
    keyset = run["state"]["state_details"]["run_input_keyset"]
    schema = httpx.get(
        f"{stack.api}/flow_runs/{job.flow_run_id}/input/{keyset['schema']}", timeout=30
    )
    assert schema.status_code == 200 and "decision" in schema.text
    answer = stack.post(
        f"/flow_runs/{job.flow_run_id}/resume",
        {"run_input": {"decision": "reject", "note": "wrong garment"}},
    )
    assert answer["status"] == "ACCEPT", answer
    ended, services = _wait_status(stack, job_id, JobStatus.CANCELLED, JobStatus.COMPLETED)
    assert ended.status is JobStatus.CANCELLED
    assert ended.error_message == "rejected at review of the keyframes by Prefect UI: wrong garment"
    assert "pika" not in services


def test_a_job_waits_across_a_worker_restart(stack: Stack) -> None:
    out = stack.cli("generate", "demo-jacket", "--review", "publish", "--json")
    job_id = json.loads(out)["jobId"]
    job, _ = _wait_status(stack, job_id, JobStatus.AWAITING_APPROVAL)
    assert job.awaiting == "publish" and job.product.video_key is None
    _wait_run(stack, job.flow_run_id, "Suspended")
    stack.stop()
    stack.start()
    stack.cli("approve", job_id)
    done, services = _wait_status(stack, job_id, JobStatus.COMPLETED, JobStatus.FAILED)
    assert done.status is JobStatus.COMPLETED, done.error_message
    assert services.count("pika") == 1
    assert done.product.video_key == done.video_key


def test_a_decision_prefect_never_heard_of_is_finished_by_the_worker(stack: Stack) -> None:
    """The decision is in the database but nobody resumed the run (Prefect was down at that
    moment, say): the worker's reconciler (every 30 s) resumes it."""
    from catwalk.db import jobs

    out = stack.cli("generate", "demo-tee", "--review", "keyframes", "--json")
    job_id = json.loads(out)["jobId"]
    job, _ = _wait_status(stack, job_id, JobStatus.AWAITING_APPROVAL)
    _wait_run(stack, job.flow_run_id, "Suspended")
    settings = Settings(CATWALK_HOME=stack.home)  # type: ignore[call-arg]
    with session_scope(settings) as session:
        jobs.decide_review(session=session, job_id=job_id, decision="approve", by="test")
    done, services = _wait_status(stack, job_id, JobStatus.COMPLETED, JobStatus.FAILED, timeout=180)
    assert done.status is JobStatus.COMPLETED, done.error_message
    assert services.count("pika") == 1
