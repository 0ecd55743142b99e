"""Fault drills on a throwaway production stack: does catwalk heal without a human?

    python bench/drills.py                 # every drill
    python bench/drills.py --only redis-wiped,kill-mid-video --jobs 6

Each drill builds its own stack in a temporary CATWALK_HOME: ``catwalk worker`` (managed
Prefect server, leases in a private Redis on a free port, never the machine's 6379),
``CATWALK_LAUNCHER=deployment``, offline providers with simulated latency. It submits jobs,
injects one fault, waits for every job to end, and prints one row:

    submitted, completed, failed, lost (no job row), stuck (not ended at the time limit),
    re-bought (paid provider calls beyond 2 images + 1 video per job), leaked (provider slots
    still counted once all jobs ended, after the reconciler's minute), recover_s (fault over
    -> last job ended), verdict (PASS: all completed, nothing re-bought, nothing leaked).

The last line is JSON with every row. Drills:

- ``kill-mid-video``: kill -9 of ``catwalk worker``, its ``prefect worker`` and the flow-run
  processes while the jobs wait for their video, then a new ``catwalk worker`` on the port;
- ``redis-persistent`` / ``redis-wiped``: the lease store's Redis stopped 60 s with the jobs in
  flight, restarted with its append-only file / with its data deleted;
- ``postgres-down``: catwalk's database (a throwaway PostgreSQL cluster the drill creates
  with ``initdb`` on a free port, never the machine's 5432) stopped (``pg_ctl -m immediate``,
  as a crash would) 60 s with the jobs in flight, then started again;
- ``provider-faults``: 30 % of image and video calls fail transiently (retried by policy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    drill: str
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    stuck: int = 0
    rebought: int = 0
    leaked: int = 0
    recover_s: float | None = None
    verdict: str = "FAIL"
    note: str = ""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Redis:
    def __init__(self, folder: Path, *, persistent: bool) -> None:
        self.port, self.folder, self.persistent = _free_port(), folder, persistent
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        keep = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else []
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port)]
            + ["--bind", "127.0.0.1", "--save", "", "--dir", str(self.folder)]
            + (keep or ["--appendonly", "no"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("private redis-server did not start")

    def stop(self, *, wipe: bool = False) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None
        if wipe:
            for leftover in self.folder.iterdir():
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


class Postgres:
    """A throwaway PostgreSQL cluster on a free port, for catwalk's database only.

    ``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres``
    user (its folder outside the drill's private temporary folder, which that user cannot
    enter). ``fsync=off``: the drill is about connections, not durability.
    """

    def __init__(self) -> None:
        import glob

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda b: int(b.split("/")[4]))
        if not bins:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin, self.port = Path(bins[-1]), _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="catwalk-drill-pg-"))
        self.data = self.folder / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/catwalk"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "catwalk")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {(done.stderr or done.stdout).strip()[-300:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "-t", "60", "start"
        )
        for _ in range(120):
            probe = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError("throwaway PostgreSQL did not start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        subprocess.run(
            [*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


class Stack:
    """``catwalk worker`` on a throwaway home, with its environment for this process."""

    def __init__(self, home: Path, redis: Redis, env: dict[str, str]) -> None:
        self.home, self.redis, self.port = home, redis, _free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PREFECT_API_URL")},
            "CATWALK_HOME": str(home),
            "CATWALK_LAUNCHER": "deployment",
            "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "OFFLINE_FRAME_WIDTH": "96",
            "VIDEO_DURATION_SECONDS": "1",
            "OFFLINE_IMAGE_LATENCY_SECONDS": "1",
            "OFFLINE_VIDEO_LATENCY_SECONDS": "5",
            "RETRY_DELAY_SECONDS": "0",
            "MAX_CONCURRENT_JOBS": "5",
            "IMAGE_PROVIDER_CONCURRENCY": "2",
            "VIDEO_PROVIDER_CONCURRENCY": "2",
            "JOB_TIMEOUT_SECONDS": "300",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **env,
        }
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self) -> None:
        log = self.home / f"worker-{len(self.workers)}.log"
        self.home.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", "catwalk.cli", "worker", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("catwalk worker exited: " + log.read_text()[-500:])
            if "worker running" in log.read_text():
                return
            time.sleep(0.5)
        raise RuntimeError("catwalk worker did not start")

    def record(self) -> dict[str, int]:
        return json.loads((self.home / "prefect" / f"server-{self.port}.json").read_text())

    def close(self) -> None:
        from catwalk.deployments.stack import process_alive, stop_group

        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        try:
            server = self.record().get("server_pid", 0)
        except OSError:
            server = 0
        if server and process_alive(server):
            stop_group(server)
        self.redis.stop()


def _apply_env(env: dict[str, str]) -> None:
    from catwalk import config

    for name in ("DATABASE_URL", "PREFECT_API_URL"):
        os.environ.pop(name, None)
    os.environ.update(env)
    config.get_settings.cache_clear()


@contextmanager
def _api(stack: Stack) -> Iterator[None]:
    """Point this process's Prefect client at the drill's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = f"http://127.0.0.1:{stack.port}/api"
    os.environ["PREFECT_API_URL"] = url
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def _submit(n: int, prefix: str) -> list[str]:
    from catwalk.db import queries, session_scope

    from catwalk import catalog, config
    from catwalk.submission import submit_job

    photos = catalog.write_demo_photos(config.get_settings().catwalk_home / "photos")
    with session_scope() as session:
        for i in range(n):
            queries.upsert_product(
                session=session,
                product_id=f"{prefix}-{i}",
                name=prefix,
                images=[str(photos["demo-tee"])],
            )
    return [submit_job(f"{prefix}-{i}", {}).job_id for i in range(n)]


def _statuses(job_ids: list[str]) -> dict[str, str | None]:
    from catwalk.db import queries, session_scope

    with session_scope() as session:
        out: dict[str, str | None] = {}
        for job_id in job_ids:
            job = queries.get_job(session=session, job_id=job_id)
            out[job_id] = None if job is None else job.status.value
        return out


def _errors(job_ids: list[str]) -> list[str]:
    from catwalk.db import queries, session_scope

    with session_scope() as session:
        jobs = [queries.get_job(session=session, job_id=j) for j in job_ids]
        return [job.error_message for job in jobs if job is not None and job.error_message]


def _all_ended(job_ids: list[str]) -> bool:
    from catwalk.domain import JobStatus

    return all(s is not None and JobStatus(s).is_final for s in _statuses(job_ids).values())


def _active_slots() -> int:
    from prefect import get_client

    from catwalk.clients.limits import IMAGE_LIMIT, VIDEO_LIMIT

    with get_client(sync_client=True) as client:
        return sum(
            client.read_global_concurrency_limit_by_name(n).active_slots
            for n in (IMAGE_LIMIT, VIDEO_LIMIT)
        )


def _wait(check: Callable[[], bool], timeout: float, every: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def _score(row: Row, job_ids: list[str], fault_over: float, timeout: float) -> Row:
    from catwalk.db import session_scope
    from catwalk.db.models import LedgerEntry
    from sqlalchemy import func, select

    ended = _wait(lambda: _all_ended(job_ids), timeout, every=2.0)
    if ended:
        row.recover_s = round(time.monotonic() - fault_over, 1)
    statuses = _statuses(job_ids)
    row.submitted = len(job_ids)
    row.completed = sum(s == "COMPLETED" for s in statuses.values())
    row.failed = sum(s == "FAILED" for s in statuses.values())
    row.lost = sum(s is None for s in statuses.values())
    row.stuck = row.submitted - row.completed - row.failed - row.lost
    with session_scope() as session:
        paid = session.execute(
            select(LedgerEntry.job_id, LedgerEntry.service, func.count())
            .where(LedgerEntry.job_id.in_(job_ids), LedgerEntry.succeeded.is_(True))
            .group_by(LedgerEntry.job_id, LedgerEntry.service)
        ).all()
    row.rebought = sum(max(0, n - (2 if svc == "nano_banana" else 1)) for _, svc, n in paid)
    # The reconciler runs every 30 s in `catwalk worker`: give it two rounds.
    _wait(lambda: _active_slots() == 0, 75, every=3.0)
    row.leaked = _active_slots()
    ok = row.completed == row.submitted and row.rebought == 0 and row.leaked == 0
    if row.failed:
        row.note = "failed: " + "; ".join(sorted(set(_errors(job_ids))))[:300]
    row.verdict = "PASS" if ok else "FAIL"
    return row


def _in_provider_call() -> bool:
    try:
        return _active_slots() > 0
    except Exception:  # noqa: BLE001 - the server is busy starting runs: not yet
        return False


def _through_outage(
    stack: Stack, row: Row, jobs: int, down: Callable[[], None], up: Callable[[], None]
) -> tuple[Row, int]:
    """Submit, wait until a job is inside a provider call, break a service for 60 s, mend it,
    and score; also returns how many jobs were in flight when it broke."""
    stack.start_worker()
    with _api(stack):
        job_ids = _submit(jobs, row.drill)
        _wait(_in_provider_call, 240, every=0.5)
        in_flight = sum(s not in ("COMPLETED", "FAILED") for s in _statuses(job_ids).values())
        down()
        time.sleep(60)
        up()
        return _score(row, job_ids, time.monotonic(), 600), in_flight


def drill_redis(tmp: Path, jobs: int, *, wipe: bool) -> Row:
    row = Row("redis-wiped" if wipe else "redis-persistent")
    redis = Redis(tmp / "redis", persistent=not wipe)
    redis.start()
    stack = Stack(tmp / "home", redis, {})
    _apply_env(stack.env)
    try:
        return _through_outage(stack, row, jobs, lambda: redis.stop(wipe=wipe), redis.start)[0]
    finally:
        stack.close()


def drill_kill(tmp: Path, jobs: int) -> Row:
    row = Row("kill-mid-video")
    redis = Redis(tmp / "redis", persistent=True)
    redis.start()
    stack = Stack(tmp / "home", redis, {"OFFLINE_VIDEO_LATENCY_SECONDS": "40"})
    _apply_env(stack.env)
    try:
        stack.start_worker()
        with _api(stack):
            return _kill_and_restart(row, stack, jobs)
    finally:
        stack.close()


def _kill_and_restart(row: Row, stack: Stack, jobs: int) -> Row:
    job_ids = _submit(jobs, row.drill)

    def some_video_waiting() -> bool:
        return "GENERATING_VIDEO" in _statuses(job_ids).values()

    _wait(some_video_waiting, 300, every=0.5)
    time.sleep(3)
    record = stack.record()
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(record["worker_pid"])],
        capture_output=True,
        text=True,
        check=False,
    )
    victims = [int(p) for p in out.stdout.split()] + [record["worker_pid"], record["owner_pid"]]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    stack.workers[0].wait(10)
    row.note = f"killed {len(victims) - 2} run(s)"
    restarted = time.monotonic()
    stack.start_worker()
    return _score(row, job_ids, restarted, 600)


def drill_postgres(tmp: Path, jobs: int) -> Row:
    row = Row("postgres-down")
    database = Postgres()
    redis = Redis(tmp / "redis", persistent=True)
    redis.start()
    stack = Stack(tmp / "home", redis, {"DATABASE_URL": database.url})
    _apply_env(stack.env)
    try:
        row, in_flight = _through_outage(stack, row, jobs, database.stop, database.start)
        # Proof the outage was felt: the steps that found the database gone said so.
        waits = sum(
            log.read_text(errors="replace").count("database unreachable")
            for log in stack.home.glob("worker-*.log")
        )
        row.note = f"{in_flight} job(s) in flight at the stop; {waits} database wait(s) logged"
        return row
    finally:
        stack.close()
        from catwalk.db.session import dispose_engines

        dispose_engines()
        database.close()


def drill_faults(tmp: Path, jobs: int) -> Row:
    row = Row("provider-faults")
    redis = Redis(tmp / "redis", persistent=True)
    redis.start()
    stack = Stack(
        tmp / "home",
        redis,
        {"OFFLINE_FAIL_STEPS": "images:transient:30%,video:transient:30%", "TASK_RETRIES": "5"},
    )
    _apply_env(stack.env)
    try:
        stack.start_worker()
        with _api(stack):
            started = time.monotonic()
            job_ids = _submit(jobs, row.drill)
            return _score(row, job_ids, started, 600)
    finally:
        stack.close()


DRILLS: dict[str, Callable[[Path, int], Row]] = {
    "kill-mid-video": drill_kill,
    "redis-persistent": lambda tmp, jobs: drill_redis(tmp, jobs, wipe=False),
    "redis-wiped": lambda tmp, jobs: drill_redis(tmp, jobs, wipe=True),
    "postgres-down": drill_postgres,
    "provider-faults": drill_faults,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(DRILLS), help="comma list of drills")
    parser.add_argument("--jobs", type=int, default=10, help="jobs per drill")
    args = parser.parse_args()
    rows: list[Row] = []
    print(
        f"{'drill':18} {'sub':>4} {'done':>5} {'fail':>5} {'lost':>5} {'stuck':>5} "
        f"{'rebuy':>5} {'leak':>5} {'recover_s':>9}  verdict"
    )
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        with tempfile.TemporaryDirectory(prefix=f"drill-{name}-") as tmp:
            try:
                row = DRILLS[name](Path(tmp), args.jobs)
            except Exception as exc:  # noqa: BLE001 - one broken drill must not hide the rest
                row = Row(name, note=" ".join(f"drill error: {exc}".split())[:200])  # one line
            finally:
                from catwalk.db.session import dispose_engines

                dispose_engines()
        rows.append(row)
        recover = "-" if row.recover_s is None else f"{row.recover_s:.0f}"
        print(
            f"{row.drill:18} {row.submitted:>4} {row.completed:>5} {row.failed:>5} {row.lost:>5} "
            f"{row.stuck:>5} {row.rebought:>5} {row.leaked:>5} {recover:>9}  {row.verdict}"
            + (f"  ({row.note})" if row.note else ""),
            flush=True,
        )
    print(json.dumps({"drills": [asdict(r) for r in rows]}))


if __name__ == "__main__":
    main()
