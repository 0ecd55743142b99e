"""Embedded mode's job queue: a burst of submissions runs in a bounded number of processes.

``LocalProcessLauncher`` does not start one process per job any more (13 at once on a small
machine saw 5 die at start-up, their jobs PENDING for ever). It drops the job id in a spool
folder (``CATWALK_HOME/queue``) and makes sure one queue runner is alive: this module, run
as ``python -m catwalk.local_queue``. The runner starts ``catwalk run-job`` for spooled jobs,
at most ``LOCAL_JOB_PROCESSES`` at a time, oldest first, and watches them: a job whose
process exits while the job is still PENDING (it died before starting) is started again,
and FAILED with one line after ``START_ATTEMPTS`` tries, so no job is stranded. The runner
exits once the spool is empty and its processes are done.

One runner per home, by an exclusive ``flock`` on ``queue/runner.lock``. A launcher writes
the spool file *before* looking at the lock, and a runner looks at the spool again *after*
letting the lock go, so a job spooled while a runner is leaving is never missed.
"""

from __future__ import annotations

import fcntl
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("catwalk.local_queue")

START_ATTEMPTS = 3
IDLE_EXIT_SECONDS = 3.0
POLL_SECONDS = 0.5


def job_command(job_id: str) -> list[str]:
    return [sys.executable, "-m", "catwalk.cli", "run-job", job_id]


def queue_dir(home: Path) -> Path:
    return home / "queue"


def spool(home: Path, job_id: str) -> Path:
    """Queue a job; returns the spool file (its name sorts in submission order)."""
    folder = queue_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time_ns():020d}-{job_id}.job"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("0")  # start attempts so far
    tmp.replace(path)
    return path


def _try_lock(home: Path) -> Any | None:
    folder = queue_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "runner.lock", "a+")  # noqa: SIM115 - held for the runner's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def runner_alive(home: Path) -> bool:
    handle = _try_lock(home)
    if handle is None:
        return True
    handle.close()  # closing releases the lock
    return False


def ensure_runner(home: Path, env: dict[str, str]) -> None:
    """Start a queue runner for ``home`` unless one holds the lock."""
    if runner_alive(home):
        return
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "queue-runner.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "catwalk.local_queue"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the CLI, the dashboard's rerun, a Ctrl-C
            env=env,
        )


def _pending(home: Path) -> list[Path]:
    return sorted(queue_dir(home).glob("*.job"))


def _job_status(job_id: str) -> str | None:
    from catwalk.db import queries, session_scope

    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        return None if job is None else job.status.value


def _fail(job_id: str, why: str) -> None:
    from catwalk import lifecycle
    from catwalk.domain import JobStatus
    from catwalk.failures import FailureKind

    lifecycle.end_job(
        job_id,
        JobStatus.FAILED,
        f"could not start the job: {why}",
        step="submit",
        failure=FailureKind.NOT_STARTED,
    )


def run(home: Path, *, processes: int) -> None:
    """Drain the spool with at most ``processes`` job processes (the runner's main loop)."""
    running: dict[str, tuple[subprocess.Popen[bytes], Path, int]] = {}
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    idle_since = time.monotonic()
    while True:
        for job_id, (proc, path, attempts) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[job_id]
            status = _job_status(job_id)
            if status == "PENDING":  # the process died before the flow took the job
                if attempts < START_ATTEMPTS:
                    path.write_text(str(attempts))
                    path.rename(path.with_name(f"{time.time_ns():020d}-{job_id}.job"))
                    logger.warning(
                        "job %s: process exited (%s) before starting; again", job_id, code
                    )
                    continue
                _fail(
                    job_id,
                    f"its process exited {START_ATTEMPTS} times before starting (last code {code})",
                )
            path.unlink(missing_ok=True)
        for path in _pending(home):
            if len(running) >= processes:
                break
            job_id = path.stem.split("-", 1)[1]
            if job_id in running:
                continue
            attempts = int(path.read_text() or 0) + 1
            path = path.rename(path.with_suffix(".running"))
            if _job_status(job_id) != "PENDING":  # cancelled meanwhile, or already run
                path.unlink(missing_ok=True)
                continue
            with open(logs / f"job-{job_id}.log", "ab") as log:
                proc = subprocess.Popen(
                    job_command(job_id),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            running[job_id] = (proc, path, attempts)
        if running or _pending(home):
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
            return
        time.sleep(POLL_SECONDS)


def main() -> None:
    from catwalk.config import get_settings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logger.setLevel(logging.INFO)

    settings = get_settings()
    home = settings.catwalk_home
    while True:
        lock = _try_lock(home)
        if lock is None:
            return  # another runner has the queue
        try:
            # Jobs a dead runner left half-started: back in the queue.
            for stale in queue_dir(home).glob("*.running"):
                stale.rename(stale.with_suffix(".job"))
            run(home, processes=settings.local_job_processes)
        finally:
            lock.close()
        if not _pending(home):  # nothing spooled while we were letting go
            return


if __name__ == "__main__":
    main()
