"""The production path for real: managed Prefect server (leases in a private Redis), work
pool, provider limits, ``prefect deploy --all`` from prefect.yaml, and a process worker.

Slow (a server, a worker and one process per flow run), so marked ``slow``; CI runs it.
The machine's Redis on 6379 is never touched: the test starts its own on a free port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from catwalk.db import queries, session_scope
from catwalk.db.models import LedgerEntry
from catwalk.db.session import dispose_engines
from catwalk.deployments import stack
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import func, select

from catwalk import catalog, config
from catwalk.clients.limits import IMAGE_LIMIT, VIDEO_LIMIT
from catwalk.domain import JobStatus
from catwalk.submission import submit_job

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        pytest.fail("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@dataclass
class Stack:
    settings: config.Settings
    api_url: str
    redis: RedisServer
    env: dict[str, str]


@pytest.fixture(scope="module")
def worker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack") / "home"
    redis = RedisServer(stack.free_port())
    redis.start()
    env = {
        "CATWALK_HOME": str(home),
        "CATWALK_LAUNCHER": "deployment",
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "OFFLINE_FRAME_WIDTH": "96",
        "VIDEO_DURATION_SECONDS": "1",
        "OFFLINE_VIDEO_LATENCY_SECONDS": "2",
        "RETRY_DELAY_SECONDS": "0",
        "MAX_CONCURRENT_JOBS": "3",
        "VIDEO_PROVIDER_CONCURRENCY": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DATABASE_URL", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        config.get_settings.cache_clear()
        settings = config.get_settings()
        server = stack.ManagedServer(settings, port=stack.free_port())
        api_url = server.start()
        worker = None
        try:
            mp.setenv("PREFECT_API_URL", api_url)
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                stack.ensure_work_pool(settings)
                stack.ensure_provider_limits(settings)
                stack.deploy_all()
                worker = stack.start_worker(name="test-worker", log_path=home / "worker.log")
                yield Stack(settings, api_url, redis, {**os.environ})
        finally:
            stack.stop_process(worker)
            server.stop()
            redis.stop()
            dispose_engines()
            config.get_settings.cache_clear()


def _product(settings: config.Settings, product_id: str) -> str:
    photos = catalog.write_demo_photos(settings.catwalk_home / "photos")
    with session_scope() as session:
        queries.upsert_product(
            session=session,
            product_id=product_id,
            name=product_id,
            images=[str(photos["demo-tee"])],
        )
    return product_id


def _wait_final(job_id: str, timeout: float) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            job = queries.get_job(session=session, job_id=job_id)
            assert job is not None
            if job.status.is_final:
                return job.status
        time.sleep(1)
    pytest.fail(f"job {job_id} not finished after {timeout:.0f} s")


def _wait_slots_free(name: str, *, timeout: float) -> float:
    """When ``name`` has no slot held any more (read from the server, not acquired in this
    process: Prefect's slot-acquisition service is bound to the first API a process used)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            if client.read_global_concurrency_limit_by_name(name).active_slots == 0:
                return time.monotonic()
        time.sleep(1)
    pytest.fail(f"{name} still has a slot held after {timeout:.0f} s")


def _paid(job_id: str) -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(
            select(LedgerEntry.service, func.count())
            .where(LedgerEntry.job_id == job_id, LedgerEntry.succeeded.is_(True))
            .group_by(LedgerEntry.service)
        ).all()
    return {service: count for service, count in rows}


def test_prefect_deployment_run_produces_a_video(worker_stack: Stack) -> None:
    pid = _product(worker_stack.settings, "cli-tee")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "deployment",
            "run",
            "generate-product-video/default",
            "--param",
            f"product_id={pid}",
            "--watch",
            "--watch-timeout",
            "400",
        ],
        cwd=ROOT,
        env=worker_stack.env,
        capture_output=True,
        text=True,
        timeout=450,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    with session_scope() as session:
        product = queries.get_product(session=session, product_id=pid)
        assert product.video_key is not None
        video = worker_stack.settings.media_dir / product.video_key
        assert video.stat().st_size > 1000
        job = queries.list_jobs(session=session, limit=1)[0]
        assert job.product_id == pid and job.status is JobStatus.COMPLETED
        assert job.flow_run_id is not None  # the run attached itself to the job it made


def test_submission_through_the_work_pool_and_duplicate_generate(worker_stack: Stack) -> None:
    pid = _product(worker_stack.settings, "pool-tee")
    first = submit_job(pid, {})
    again = submit_job(pid, {})
    assert first.created and not again.created and again.job_id == first.job_id
    assert _wait_final(first.job_id, 400) is JobStatus.COMPLETED
    assert _paid(first.job_id) == {"nano_banana": 2, "keyframe_check": 1, "pika": 1}


def test_a_killed_slot_holder_frees_its_slot_within_the_lease(worker_stack: Stack) -> None:
    """kill -9 a process holding the video provider's only slot: the slot comes back by
    itself within the lease (60 s) plus the server's repossessor sweep (15 s)."""
    script = (
        "import sys, time\n"
        "from catwalk.clients.limits import provider_slot\n"
        "with provider_slot('video'):\n    print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=worker_stack.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name(VIDEO_LIMIT).active_slots == 1
        holder.kill()
        holder.wait(10)
        killed_at = time.monotonic()
        freed_after = _wait_slots_free(VIDEO_LIMIT, timeout=180) - killed_at
    finally:
        holder.kill()
    print(f"slot of a kill -9'd holder came back after {freed_after:.1f} s")  # noqa: T201 - measurement
    assert freed_after <= 60 + 15 + 30  # lease + sweep + a loaded machine's slack


def test_redis_down_submissions_recorded_jobs_wait_then_drain(worker_stack: Stack) -> None:
    """With the lease store's Redis stopped: submissions are accepted and recorded, running
    jobs wait for their provider slot (saying so), nothing fails; when Redis is back the
    queue drains."""
    pids = [_product(worker_stack.settings, f"redis-{n}") for n in range(2)]
    # Redis here keeps nothing on disk: a lease alive when it stops is lost with it, and its
    # slot with it (README "Limits"). Start from no slot held so the test measures the outage.
    for name in (IMAGE_LIMIT, VIDEO_LIMIT):
        _wait_slots_free(name, timeout=180)
    worker_stack.redis.stop()
    try:
        latencies, jobs = [], []
        for pid in pids:
            started = time.perf_counter()
            jobs.append(submit_job(pid, {}).job_id)
            latencies.append(time.perf_counter() - started)
        print(f"submissions with Redis down answered in {[round(x, 3) for x in latencies]} s")  # noqa: T201
        deadline = time.monotonic() + 240
        waiting: set[str] = set()
        while time.monotonic() < deadline and len(waiting) < len(jobs):
            with session_scope() as session:
                for job_id in jobs:
                    job = queries.get_job(session=session, job_id=job_id)
                    assert job is not None and not job.status.is_final, (
                        job.status,
                        job.error_message,
                    )
                    if job.wait_reason and "unavailable" in job.wait_reason:
                        waiting.add(job_id)
            time.sleep(1)
        assert waiting == set(jobs)
    finally:
        worker_stack.redis.start()
    for job_id in jobs:
        assert _wait_final(job_id, 400) is JobStatus.COMPLETED
        assert _paid(job_id) == {"nano_banana": 2, "keyframe_check": 1, "pika": 1}
