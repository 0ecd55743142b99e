"""Throughput benchmark: N products through the real server + work pool + worker path.

    python bench/throughput.py                 # 100 products, image 2 s/keyframe, video 20 s
    python bench/throughput.py --quick         # 20 products, 0.5 s / 5 s: a couple of minutes

Phases (figures printed as they come, a JSON summary on the last line):
1. throughput: N jobs submitted at once through ``submission.submit_job`` with the
   DeploymentLauncher, run by one ``prefect worker`` at work-pool concurrency C; makespan
   against the ideal ceil(N/C) x per-job provider time, and where the rest goes (queue,
   process start-up, in-flow overhead), read from Prefect's flow-run state history;
2. submit latency: S more submissions while phase 1's queue is busy (then cancelled);
3. faults: N more jobs while each provider call fails transiently with probability P;
   jobs completed, paid calls, paid calls / calls a fault-free run needs, re-bought calls.

Everything lives in a throwaway CATWALK_HOME; PostgreSQL databases it creates are dropped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


PG_ADMIN = os.environ.get("CATWALK_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="20 products, 0.5 s images, 5 s video")
    p.add_argument(
        "--products", type=int, default=None, help="jobs per run (default 100, quick 20)"
    )
    p.add_argument(
        "--concurrency", type=int, default=10, help="work pool limit (MAX_CONCURRENT_JOBS)"
    )
    p.add_argument(
        "--image-latency", type=float, default=None, help="seconds per keyframe (2, quick 0.5)"
    )
    p.add_argument(
        "--video-latency", type=float, default=None, help="seconds per video (20, quick 5)"
    )
    p.add_argument(
        "--submissions", type=int, default=200, help="submissions timed against a busy queue"
    )
    p.add_argument(
        "--fail-rate", type=float, default=0.3, help="transient failure probability per call"
    )
    p.add_argument(
        "--frame-width", type=int, default=96, help="offline frame width (rendering cost)"
    )
    p.add_argument("--catwalk-db", choices=["postgresql", "sqlite"], default="postgresql")
    p.add_argument("--prefect-db", choices=["postgresql", "sqlite"], default="postgresql")
    p.add_argument("--query-seconds", type=float, default=1.0, help="worker polling interval")
    p.add_argument("--skip-faults", action="store_true", help="no phase 3")
    p.add_argument(
        "--poll-faults",
        action="store_true",
        help="phase 3 renders through the fake fal queue, which refuses --fail-rate of its "
        "status polls with 503 (abandoned_requests: fal requests ended jobs left behind)",
    )
    p.add_argument("--skip-throughput", action="store_true", help="no phases 1 and 2")
    p.add_argument(
        "--fault-products", type=int, default=None, help="jobs in phase 3 (default: --products)"
    )
    a = p.parse_args()
    a.products = a.products or (20 if a.quick else 100)
    a.fault_products = a.fault_products or a.products
    a.image_latency = a.image_latency if a.image_latency is not None else (0.5 if a.quick else 2.0)
    a.video_latency = a.video_latency if a.video_latency is not None else (5.0 if a.quick else 20.0)
    return a


def _say(text: str) -> None:
    print(text, flush=True)


def _create_pg(prefix: str) -> tuple[str, str]:
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def _drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


class Bench:
    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        self.args = args
        self.home = home
        self.databases: list[str] = []
        self.server: Any = None
        self.worker: Any = None

    # Setup ---------------------------------------------------------------------------
    def environment(self) -> None:
        a = self.args
        env = {
            "CATWALK_HOME": str(self.home),
            "CATWALK_LAUNCHER": "deployment",
            "MAX_CONCURRENT_JOBS": str(a.concurrency),
            # Provider limits above the pool's, so the pool is what is measured.
            "IMAGE_PROVIDER_CONCURRENCY": str(a.concurrency),
            "VIDEO_PROVIDER_CONCURRENCY": str(a.concurrency),
            "OFFLINE_IMAGE_LATENCY_SECONDS": str(a.image_latency),
            "OFFLINE_VIDEO_LATENCY_SECONDS": str(a.video_latency),
            "OFFLINE_FRAME_WIDTH": str(a.frame_width),
            "VIDEO_DURATION_SECONDS": "1",
            "RETRY_DELAY_SECONDS": "1",
            "DAILY_GENERATION_LIMIT": "100000",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        if a.catwalk_db == "postgresql":
            name, url = _create_pg("catwalk_bench")
            self.databases.append(name)
            env["DATABASE_URL"] = url
        if a.prefect_db == "postgresql":
            name, url = _create_pg("prefect_bench")
            self.databases.append(name)
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = url.replace(
                "postgresql://", "postgresql+asyncpg://", 1
            )
        for key in ("PREFECT_API_URL", "OFFLINE_FAIL_STEPS"):
            os.environ.pop(key, None)
        os.environ.update(env)

    def start_stack(self) -> None:
        from catwalk.deployments import stack

        from catwalk.config import get_settings

        settings = get_settings()
        t0 = time.monotonic()
        self.server = stack.ManagedServer(settings, port=stack.free_port())
        os.environ["PREFECT_API_URL"] = self.server.start()
        _say(
            f"server   up in {time.monotonic() - t0:.1f} s at {self.server.api_url} (prefect db: {self.args.prefect_db})"
        )
        t0 = time.monotonic()
        stack.ensure_work_pool(settings)
        stack.ensure_provider_limits(settings)
        stack.deploy_all()
        _say(f"deployed in {time.monotonic() - t0:.1f} s")
        self.start_worker()

    def start_worker(self) -> None:
        from catwalk.deployments import stack

        stack.stop_process(self.worker)
        self.worker = stack.start_worker(
            name=f"bench-{uuid.uuid4().hex[:6]}",
            query_seconds=self.args.query_seconds,
            log_path=self.home / "worker.log",
        )
        time.sleep(3)

    def stop(self) -> None:
        from catwalk.db.session import dispose_engines
        from catwalk.deployments import stack

        stack.stop_process(self.worker)
        if self.server is not None:
            self.server.stop()
        dispose_engines()
        for name in self.databases:
            _drop_pg(name)

    def seed(self, prefix: str, count: int) -> list[str]:
        from catwalk.db import queries, session_scope

        from catwalk import catalog

        photos = list(catalog.write_demo_photos(self.home / "photos").values())
        ids = [f"{prefix}-{i:03d}" for i in range(count)]
        with session_scope() as session:
            for i, pid in enumerate(ids):
                queries.upsert_product(
                    session=session, product_id=pid, name=pid, images=[str(photos[i % len(photos)])]
                )
        return ids

    # Phases --------------------------------------------------------------------------
    def submit(self, ids: list[str]) -> tuple[list[str], list[float]]:
        from catwalk.submission import submit_job

        jobs, latencies = [], []
        for pid in ids:
            t0 = time.perf_counter()
            jobs.append(submit_job(pid, {}).job_id)
            latencies.append(time.perf_counter() - t0)
        return jobs, latencies

    def wait(self, job_ids: list[str], label: str, *, timeout: float) -> float:
        from catwalk.db import session_scope
        from catwalk.db.models import VideoJob

        t0 = time.monotonic()
        last = -1
        while time.monotonic() - t0 < timeout:
            with session_scope() as session:
                jobs = session.query(VideoJob.status).filter(VideoJob.id.in_(job_ids)).all()
            done = sum(1 for (s,) in jobs if s.is_final)
            if done != last:
                _say(
                    f"  {label}: {done}/{len(job_ids)} finished after {time.monotonic() - t0:.0f} s"
                )
                last = done
            if done == len(job_ids):
                return time.monotonic() - t0
            time.sleep(1.0)
        raise TimeoutError(f"{label}: jobs still running after {timeout:.0f} s")

    def run_times(self, job_ids: list[str]) -> dict[str, list[float]]:
        """Per-job phases from Prefect's flow-run state history (server clock)."""
        from catwalk.db import session_scope
        from catwalk.db.models import VideoJob
        from prefect import get_client

        with session_scope() as session:
            runs = [
                r
                for (r,) in session.query(VideoJob.flow_run_id)
                .filter(VideoJob.id.in_(job_ids))
                .all()
                if r
            ]
        out: dict[str, list[float]] = defaultdict(list)
        with get_client(sync_client=True) as client:
            for run_id in runs:
                states = {s.type.value: s.timestamp for s in client.read_flow_run_states(run_id)}
                if not {"SCHEDULED", "PENDING", "RUNNING", "COMPLETED"} <= set(states):
                    continue
                out["queued"].append((states["PENDING"] - states["SCHEDULED"]).total_seconds())
                out["startup"].append((states["RUNNING"] - states["PENDING"]).total_seconds())
                out["in_flow"].append((states["COMPLETED"] - states["RUNNING"]).total_seconds())
                out["pending_at"].append(states["PENDING"].timestamp())
                out["completed_at"].append(states["COMPLETED"].timestamp())
        # Slot hand-over: for each run that waited for the pool, the gap between the
        # nearest earlier completion and its own dispatch (worker polling shows up here).
        completions = sorted(out["completed_at"])
        for pending in out["pending_at"]:
            earlier = [c for c in completions if c <= pending]
            if earlier:
                out["handover"].append(pending - earlier[-1])
        return out

    def pause(self, paused: bool) -> None:
        from catwalk.deployments.stack import WORK_POOL
        from prefect import get_client
        from prefect.client.schemas.actions import WorkPoolUpdate

        with get_client(sync_client=True) as client:
            client.update_work_pool(WORK_POOL, WorkPoolUpdate(is_paused=paused))

    def drain(self, job_ids: list[str]) -> int:
        """Cancel the runs of ``job_ids`` still waiting in the queue; let started ones end."""
        from concurrent.futures import ThreadPoolExecutor

        from catwalk.db import session_scope
        from catwalk.db.base import utcnow
        from catwalk.db.models import VideoJob
        from prefect import get_client
        from prefect.client.schemas.objects import StateType
        from prefect.states import Cancelled

        from catwalk.domain import JobStatus

        with session_scope() as session:
            runs = {
                j.flow_run_id: j.id
                for j in session.query(VideoJob).filter(VideoJob.id.in_(job_ids))
                if j.flow_run_id
            }
        cancelled: list[str] = []

        def cancel(run_id: str) -> None:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(run_id)
                if run.state and run.state.type is StateType.SCHEDULED:
                    client.set_flow_run_state(
                        run_id, Cancelled(message="bench: queue filler"), force=True
                    )
                    cancelled.append(runs[run_id])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(cancel, runs))
        with session_scope() as session:
            for job in session.query(VideoJob).filter(VideoJob.id.in_(cancelled)):
                job.status, job.completed_at, job.error_message = (
                    JobStatus.CANCELLED,
                    utcnow(),
                    "bench: queue filler",
                )
        rest = [j for j in job_ids if j not in set(cancelled)]
        if rest:
            self.wait(rest, "queue fillers already started", timeout=600)
        return len(cancelled)

    def ledger(self, job_ids: list[str]) -> dict[str, Any]:
        from catwalk.db import session_scope
        from catwalk.db.models import JobEvent, LedgerEntry, VideoJob
        from sqlalchemy import func, select

        from catwalk.domain import JobStatus

        with session_scope() as session:
            rows = (
                session.query(LedgerEntry.job_id, LedgerEntry.service, LedgerEntry.succeeded)
                .filter(LedgerEntry.job_id.in_(job_ids))
                .all()
            )
            statuses = Counter(
                s.value for (s,) in session.query(VideoJob.status).filter(VideoJob.id.in_(job_ids))
            )
            failures = session.scalar(
                select(func.count())
                .select_from(JobEvent)
                .where(JobEvent.job_id.in_(job_ids), JobEvent.kind == "failed")
            )
        paid = [r for r in rows if r.succeeded]
        per_job: dict[tuple[str, str], int] = Counter((r.job_id, r.service) for r in paid)
        needed = {"nano_banana": 2, "pika": 1}
        rebought = sum(max(0, n - needed[service]) for (_, service), n in per_job.items())
        return {
            "completed": statuses.get(JobStatus.COMPLETED.value, 0),
            "statuses": dict(statuses),
            "paid_calls": len(paid),
            "attempted_unpaid": len(rows) - len(paid),
            "rebought": rebought,
            "failed_attempts": int(failures or 0),
        }


def main() -> None:
    args = _args()
    home = Path(tempfile.mkdtemp(prefix="catwalk-bench-"))
    bench = Bench(args, home)
    bench.environment()
    per_job = 2 * args.image_latency + args.video_latency
    ideal = math.ceil(args.products / args.concurrency) * per_job
    _say(
        f"bench: {args.products} products, concurrency {args.concurrency}, provider time {per_job:.1f} s/job, "
        f"ideal makespan {ideal:.1f} s"
    )
    _say(
        f"       catwalk db {args.catwalk_db}, prefect db {args.prefect_db}, "
        f"worker polls every {args.query_seconds} s, home {home}"
    )
    summary: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "products": args.products,
        "concurrency": args.concurrency,
        "image_latency_s": args.image_latency,
        "video_latency_s": args.video_latency,
    }
    try:
        bench.start_stack()
        if not args.skip_throughput:
            throughput(bench, args, summary)
        if not args.skip_faults:
            faults(bench, args, summary)
    except KeyboardInterrupt:
        summary["interrupted"] = True
    finally:
        bench.stop()
        # The last line, even when interrupted: what was measured so far.
        print(json.dumps(summary), flush=True)


def throughput(bench: Bench, args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """Phases 1 and 2."""
    from catwalk.db import session_scope
    from catwalk.db.models import VideoJob

    n, c = args.products, args.concurrency
    per_job = 2 * args.image_latency + args.video_latency
    waves = math.ceil(n / c)
    ideal = waves * per_job
    _say("phase 1: throughput")
    ids = bench.seed("bench", n)
    t0 = time.monotonic()
    jobs, first_latencies = bench.submit(ids)
    _say(f"  submitted {n} in {time.monotonic() - t0:.1f} s")
    bench.wait(jobs, "throughput", timeout=ideal * 4 + 1800)
    with session_scope() as session:
        rows = (
            session.query(VideoJob.created_at, VideoJob.completed_at)
            .filter(VideoJob.id.in_(jobs))
            .all()
        )
    makespan = (max(r.completed_at for r in rows) - min(r.created_at for r in rows)).total_seconds()
    ratio = makespan / ideal
    overhead = (makespan - ideal) / waves
    times = bench.run_times(jobs)
    mean = {
        k: statistics.mean(v)
        for k, v in times.items()
        if v and k not in ("pending_at", "completed_at")
    }
    _say(
        f"  makespan {makespan:.1f} s vs ideal {ideal:.1f} s: ratio {ratio:.3f}; overhead {overhead:.2f} s per job slot"
    )
    _say(
        f"  per run (mean): process start-up {mean.get('startup', 0):.2f} s, in-flow {mean.get('in_flow', 0):.2f} s "
        f"(provider {per_job:.1f} s => flow overhead {mean.get('in_flow', 0) - per_job:.2f} s), "
        f"slot hand-over {mean.get('handover', 0):.2f} s"
    )
    first = bench.ledger(jobs)
    summary.update(
        makespan_s=round(makespan, 2),
        ideal_s=round(ideal, 2),
        makespan_ratio=round(ratio, 3),
        overhead_per_job_s=round(overhead, 2),
        startup_s=round(mean.get("startup", 0), 2),
        in_flow_overhead_s=round(mean.get("in_flow", 0) - per_job, 2),
        handover_s=round(mean.get("handover", 0), 2),
        completed=first["completed"],
        first_batch_submit_p50_ms=round(1000 * statistics.median(first_latencies), 1),
    )

    # Phase 2 on a busy queue that does not also eat the CPU: the pool is paused, N runs
    # already wait in it, and each timed submission joins the back of the line.
    bench.pause(True)
    fillers, _ = bench.submit(bench.seed("filler", n))
    busy_jobs, latencies = bench.submit(bench.seed("busy", args.submissions))
    _say(
        f"phase 2: {len(latencies)} submissions against a queue of {n}..{n + len(latencies)}: "
        f"p50 {1000 * statistics.median(latencies):.0f} ms, p95 {1000 * _percentile(latencies, 0.95):.0f} ms, "
        f"max {1000 * max(latencies):.0f} ms"
    )
    summary.update(
        submit_p50_ms=round(1000 * statistics.median(latencies), 1),
        submit_p95_ms=round(1000 * _percentile(latencies, 0.95), 1),
        submit_max_ms=round(1000 * max(latencies), 1),
    )
    _say(f"  cancelled {bench.drain(fillers + busy_jobs)} queued runs")
    bench.pause(False)


def faults(bench: Bench, args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """Phase 3: transient failures; count what was paid and what was bought twice."""
    n = args.fault_products
    ideal = math.ceil(n / args.concurrency) * (2 * args.image_latency + args.video_latency)
    pct = round(100 * args.fail_rate)
    _say(f"phase 3: faults ({pct}% of provider calls fail transiently), {n} jobs")
    os.environ["OFFLINE_FAIL_STEPS"] = f"images:transient:{pct}%,video:transient:{pct}%"
    fal = served = None
    if args.poll_faults:
        from catwalk.fakes import FakeFal, serve_in_thread

        _say(f"  video through the fake fal queue: {pct}% of status polls answer 503")
        fal = FakeFal(
            api_key="bench-id:bench-secret",
            video_width=args.frame_width,
            queue_polls=2,
            progress_polls=2,
            status_fail_rate=args.fail_rate,
        )
        served = serve_in_thread(fal.app)  # already started
        url = served.url
        os.environ.update(
            OFFLINE_FAIL_STEPS=f"images:transient:{pct}%",
            VIDEO_PROVIDER="pika",
            PIKA_LABS_API_URL=url,
            PIKA_LABS_API_KEY="bench-id:bench-secret",
            PROVIDER_POLL_INTERVAL_SECONDS="1",
        )
    bench.start_worker()  # flow-run processes inherit the worker's environment
    fault_jobs, _ = bench.submit(bench.seed("fault", n))
    bench.wait(fault_jobs, "faults", timeout=ideal * 8 + 1800)
    led = bench.ledger(fault_jobs)
    if fal is not None:
        summary.update(_fal_requests(fal, fault_jobs))
        _say(
            f"  fal: {summary['fal_submits']} submits, {summary['fal_cancels']} cancels, "
            f"{summary['fal_status_polls']} status polls; "
            f"abandoned requests {summary['abandoned_requests']}"
        )
        served.stop()  # type: ignore[union-attr]
        fal.close()
    fault_free = 3 * n
    _say(
        f"  completed {led['completed']}/{n} {led['statuses']}; paid calls {led['paid_calls']} "
        f"(fault-free run needs {fault_free}); failed attempts {led['failed_attempts']} "
        f"({led['attempted_unpaid']} of them billed); "
        f"re-bought {led['rebought']}"
    )
    summary.update(
        fault_jobs=n,
        fault_jobs_completed=led["completed"],
        paid_calls=led["paid_calls"],
        paid_calls_ratio=round(led["paid_calls"] / fault_free, 3),
        failed_attempts=led["failed_attempts"],
        rebought_calls=led["rebought"],
    )


def _fal_requests(fal: Any, job_ids: list[str]) -> dict[str, Any]:
    """Requests at the fake fal that nobody follows any more: still queued or running for a
    job that ended, or finished at fal without a row in the ledger (paid for, unrecorded)."""
    from catwalk.db import session_scope
    from catwalk.db.models import LedgerEntry, VideoJob
    from sqlalchemy import select

    state = fal.state()
    with session_scope() as session:
        ledger = set(
            session.scalars(
                select(LedgerEntry.provider_request_id).where(LedgerEntry.job_id.in_(job_ids))
            )
        )
        active = set(
            session.scalars(
                select(VideoJob.video_request_id).where(
                    VideoJob.id.in_(job_ids), VideoJob.completed_at.is_(None)
                )
            )
        )
    abandoned = 0
    for rid, req in state["requests"].items():
        if rid in active or req["cancelled"]:
            continue
        if req["state"] != "COMPLETED" or rid not in ledger:
            abandoned += 1
    return {
        "fal_submits": state["submit"],
        "fal_cancels": state["cancel"],
        "fal_status_polls": state["status"],
        "abandoned_requests": abandoned,
    }


if __name__ == "__main__":
    main()
