"""Fault drills on the production path (issue #13): ``catwalk worker`` with its managed
Prefect server, leases in a Redis of the test's own (never the machine's 6379),
``CATWALK_LAUNCHER=deployment``.

Redis stopped for 60 s with 10 jobs in flight, with its data kept (append-only file) and
wiped: every job ends COMPLETED with no manual step, each paid once (2 images, 1 video),
and no provider slot stays counted once the queue has drained.

catwalk's PostgreSQL (a throwaway cluster of the test's own, never the machine's 5432)
stopped as by a crash for 60 s with jobs in flight: the same, with the worker still up.

Worker and run killed (``kill -9``) while the job waits for its video: after a restart of
``catwalk worker`` the job ends COMPLETED with 1 video submit and 2 image calls.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from catwalk.db import queries, session_scope
from catwalk.db.models import JobEvent, LedgerEntry
from catwalk.db.session import dispose_engines
from catwalk.deployments.stack import free_port, process_alive, stop_group
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import func, select

from catwalk import catalog, config
from catwalk.clients.limits import IMAGE_LIMIT, VIDEO_LIMIT
from catwalk.domain import JobStatus
from catwalk.submission import submit_job

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
JOBS = 10
OUTAGE_SECONDS = 60


class Redis:
    """A private redis-server; ``persistent`` keeps its data in an append-only file."""

    def __init__(self, port: int, folder: Path, *, persistent: bool) -> None:
        self.port, self.folder, self.persistent = port, folder, persistent
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else []
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + (persistence or ["--appendonly", "no"])
            + ["--dir", str(self.folder)],
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
            self.process.terminate()  # SIGTERM: with appendonly, Redis flushes and exits
            self.process.wait(20)
            self.process = None

    def keys(self) -> int:
        import redis

        return int(redis.Redis(port=self.port, socket_timeout=2).dbsize())


def _start_worker(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [sys.executable, "-m", "catwalk.cli", "worker", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        if "worker running" in log.read_text():
            return proc
        time.sleep(0.5)
    pytest.fail("catwalk worker did not start: " + log.read_text()[-3000:])


@contextmanager
def _production_stack(
    tmp_path: Path, *, persistent: bool, **overrides: str
) -> Iterator[tuple[Redis, int, list[subprocess.Popen[bytes]]]]:
    home = tmp_path / "home"
    redis = Redis(free_port(), tmp_path / "redis", persistent=persistent)
    redis.start()
    port = free_port()
    env = {
        "CATWALK_HOME": str(home),
        "CATWALK_LAUNCHER": "deployment",
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "OFFLINE_FRAME_WIDTH": "96",
        "VIDEO_DURATION_SECONDS": "1",
        "OFFLINE_IMAGE_LATENCY_SECONDS": "1",
        "OFFLINE_VIDEO_LATENCY_SECONDS": "3",
        "RETRY_DELAY_SECONDS": "0",
        "MAX_CONCURRENT_JOBS": "5",
        "IMAGE_PROVIDER_CONCURRENCY": "2",
        "VIDEO_PROVIDER_CONCURRENCY": "1",
        "JOB_TIMEOUT_SECONDS": "900",
        **overrides,
    }
    workers: list[subprocess.Popen[bytes]] = []
    with pytest.MonkeyPatch.context() as mp:
        for name in ("DATABASE_URL", "PREFECT_API_URL"):
            mp.delenv(name, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        config.get_settings.cache_clear()
        try:
            workers.append(_start_worker({**os.environ}, port, tmp_path / "worker.log"))
            api_url = f"http://127.0.0.1:{port}/api"
            mp.setenv("PREFECT_API_URL", api_url)
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                yield redis, port, workers
        finally:
            for worker in workers:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGINT)
                    try:
                        worker.wait(60)
                    except subprocess.TimeoutExpired:
                        os.killpg(worker.pid, signal.SIGKILL)
            record = home / "prefect" / f"server-{port}.json"
            if record.exists():  # a server the test's kill -9 left without an owner
                server_pid = json.loads(record.read_text()).get("server_pid", 0)
                if process_alive(server_pid):
                    stop_group(server_pid)
            redis.stop()
            dispose_engines()
            config.get_settings.cache_clear()


@pytest.fixture(params=["persistent", "wiped"])
def drill(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Redis, Path]]:
    with _production_stack(tmp_path, persistent=request.param == "persistent") as (redis, _, _):
        yield request.param, redis, tmp_path


def _products(n: int, prefix: str) -> list[str]:
    photos = catalog.write_demo_photos(config.get_settings().catwalk_home / "photos")
    with session_scope() as session:
        for i in range(n):
            queries.upsert_product(
                session=session,
                product_id=f"{prefix}-{i}",
                name=f"{prefix} {i}",
                images=[str(photos["demo-tee"])],
            )
    return [f"{prefix}-{i}" for i in range(n)]


def _status_counts(job_ids: list[str]) -> dict[JobStatus, int]:
    counts: dict[JobStatus, int] = {}
    with session_scope() as session:
        for job_id in job_ids:
            job = queries.get_job(session=session, job_id=job_id)
            assert job is not None
            counts[job.status] = counts.get(job.status, 0) + 1
    return counts


def _active_slots() -> dict[str, int]:
    with get_client(sync_client=True) as client:
        return {
            name: client.read_global_concurrency_limit_by_name(name).active_slots
            for name in (IMAGE_LIMIT, VIDEO_LIMIT)
        }


def _drain(jobs: list[str], since: float, timeout: float = 600) -> float:
    """Wait until every job has ended; seconds since ``since``."""
    while time.monotonic() < since + timeout:
        counts = _status_counts(jobs)
        if sum(n for status, n in counts.items() if status.is_final) == len(jobs):
            break
        time.sleep(2)
    return time.monotonic() - since


def _paid() -> dict[str, int]:
    """Succeeded ledger rows by service, over every job of the test."""
    with session_scope() as session:
        rows = session.execute(
            select(LedgerEntry.service, func.count())
            .where(LedgerEntry.succeeded.is_(True))
            .group_by(LedgerEntry.service)
        ).all()
    return {service: n for service, n in rows}


def test_redis_down_60s_with_10_jobs_in_flight_heals_by_itself(drill) -> None:
    mode, redis, _ = drill
    jobs = [submit_job(pid, {}).job_id for pid in _products(JOBS, "drill")]
    # In flight: wait until some job is inside a provider call before cutting Redis.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(_active_slots().values()):
        time.sleep(0.5)
    assert any(_active_slots().values()), "no job reached a provider call"
    redis.stop()
    if mode == "wiped":
        for leftover in redis.folder.iterdir():
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    time.sleep(OUTAGE_SECONDS)
    redis.start()
    back = time.monotonic()
    if mode == "persistent":
        assert redis.keys() > 0  # the data really survived
    drained = _drain(jobs, back)
    counts = _status_counts(jobs)
    assert counts == {JobStatus.COMPLETED: JOBS}, counts
    # Nothing bought twice: two keyframes, one keyframe check (offline: free) and one video.
    assert _paid() == {"nano_banana": 2 * JOBS, "keyframe_check": JOBS, "pika": JOBS}
    # No slot stays counted: the reconciler (every minute in `catwalk worker`) repairs
    # whatever the outage leaked.
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and any(_active_slots().values()):
        time.sleep(2)
    slots = _active_slots()
    print(f"redis {mode}: all {JOBS} COMPLETED {drained:.0f} s after Redis returned; slots {slots}")  # noqa: T201
    assert slots == {IMAGE_LIMIT: 0, VIDEO_LIMIT: 0}
    with session_scope() as session:
        from catwalk.db import slots as slot_rows

        assert list(slot_rows.list_holders(session=session)) == []


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(x) for x in out.stdout.split()]


def test_kill_9_of_worker_and_run_mid_video_then_restart_completes(tmp_path: Path) -> None:
    # JOB_TIMEOUT_SECONDS 120: the resumed run starts past it, so the old deadline (from the
    # job's first start) would give it 1 s and fail the job.
    with _production_stack(
        tmp_path,
        persistent=True,
        OFFLINE_VIDEO_LATENCY_SECONDS="40",
        JOB_TIMEOUT_SECONDS="120",
    ) as (_redis, port, workers):
        [pid] = _products(1, "killed")
        job_id = submit_job(pid, {}).job_id
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with session_scope() as session:
                job = queries.get_job(session=session, job_id=job_id)
                assert job is not None and not job.status.is_final, job.error_message
                if job.status is JobStatus.GENERATING_VIDEO and job.video_request_id:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the job never reached its video request")
        time.sleep(3)  # inside the provider wait
        home = config.get_settings().catwalk_home
        record = json.loads((home / "prefect" / f"server-{port}.json").read_text())
        runs = _children(record["worker_pid"])
        assert runs, "no flow-run process under the prefect worker"
        for victim in [*runs, record["worker_pid"], record["owner_pid"]]:
            os.kill(victim, signal.SIGKILL)
        workers[0].wait(10)
        restarted = time.monotonic()
        workers.append(_start_worker({**os.environ}, port, tmp_path / "worker-2.log"))
        seen_lost = False
        final = None
        while time.monotonic() < restarted + 420:
            with session_scope() as session:
                job = queries.get_job(session=session, job_id=job_id)
                assert job is not None
                seen_lost = seen_lost or job.wait_reason == "worker lost, resuming"
                if job.status.is_final:
                    final = job.status, job.error_message
                    break
            time.sleep(1)
        took = time.monotonic() - restarted
        print(f"kill -9 mid-video: job {final} {took:.0f} s after the restart")  # noqa: T201
        assert final == (JobStatus.COMPLETED, None)
        with session_scope() as session:
            paid = session.execute(
                select(LedgerEntry.service, func.count())
                .where(LedgerEntry.job_id == job_id, LedgerEntry.succeeded.is_(True))
                .group_by(LedgerEntry.service)
            ).all()
            submits = queries.count_events(session=session, job_id=job_id, step="video")
            events = [
                e.message
                for e in session.scalars(
                    select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.step == "video")
                )
                if e.message and e.message.startswith("provider accepted request")
            ]
        assert dict(paid) == {"nano_banana": 2, "keyframe_check": 1, "pika": 1}
        assert len(events) == 1, events  # one video submit: the restart re-attached to it
        assert submits >= 1
        assert seen_lost or took < 60  # the admin saw why it waited (unless it was quick)
        assert took <= 300  # issue: 3 minutes on a quiet machine; slack for a loaded one


def test_postgresql_down_60s_with_jobs_in_flight_heals_by_itself(tmp_path: Path) -> None:
    from bench.drills import Postgres

    database = Postgres()
    try:
        with _production_stack(tmp_path, persistent=True, DATABASE_URL=database.url) as (
            _redis,
            _port,
            workers,
        ):
            jobs = [submit_job(pid, {}).job_id for pid in _products(6, "pgdown")]
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not any(_active_slots().values()):
                time.sleep(0.5)
            assert any(_active_slots().values()), "no job reached a provider call"
            in_flight = sum(n for s, n in _status_counts(jobs).items() if not s.is_final)
            database.stop()
            time.sleep(OUTAGE_SECONDS)
            database.start()
            back = time.monotonic()
            drained = _drain(jobs, back)
            assert _status_counts(jobs) == {JobStatus.COMPLETED: len(jobs)}
            assert _paid() == {"nano_banana": 12, "keyframe_check": 6, "pika": 6}
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and any(_active_slots().values()):
                time.sleep(2)
            assert _active_slots() == {IMAGE_LIMIT: 0, VIDEO_LIMIT: 0}
            # The worker rode out the outage (no restart), and the outage was felt by the jobs.
            assert workers[0].poll() is None
            log = (tmp_path / "worker.log").read_text(errors="replace")
            assert log.count("database unreachable") > 0
            print(f"postgres down 60 s: {in_flight} in flight, all COMPLETED {drained:.0f} s after")  # noqa: T201
    finally:
        database.close()
