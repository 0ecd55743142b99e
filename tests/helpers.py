"""Small helpers shared by tests: seeding, running a job in-process, reading videos."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from catwalk.db import queries, session_scope
from catwalk.db.models import VideoJob


@dataclass
class RecordingLauncher:
    """A launcher that starts nothing and remembers what it was asked to start."""

    launched: list[dict[str, Any]] = field(default_factory=list)

    def launch(self, *, job_id: str, product_id: str, options: dict[str, Any]) -> str | None:
        self.launched.append({"job_id": job_id, "product_id": product_id, "options": options})
        return None


def run_job_inline(product_id: str, options: dict[str, Any] | None = None) -> VideoJob:
    """Submit a job and run its flow in this process; returns the job as it ended."""
    from catwalk.flows.generate_product_video import generate_product_video

    from catwalk.submission import submit_job

    submission = submit_job(product_id, options or {}, launcher=RecordingLauncher())
    generate_product_video(product_id, options, submission.job_id, return_state=True)
    return load_job(submission.job_id)


def load_job(job_id: str) -> VideoJob:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        # Touch lazy collections while the session is open.
        _ = list(job.events), job.product.video_key
        return job


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]


def atom_offsets(path: Path) -> dict[str, int]:
    """Top-level MP4 atoms and where they start (to check faststart: moov before mdat)."""
    data = path.read_bytes()
    offsets: dict[str, int] = {}
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        name = data[pos + 4 : pos + 8].decode("latin-1")
        offsets.setdefault(name, pos)
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return offsets


ROOT = Path(__file__).resolve().parent.parent


def operator_env(home: Path, **extra: str) -> dict[str, str]:
    """An operator's environment for ``catwalk worker`` in ``home``: none of the test
    suite's Prefect or database settings, small frames, a 1 s video, no retry delays."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", "DATABASE_URL", "REDIS_URL", "PREFECT_LOGGING_LEVEL")
        and not k.startswith("PREFECT_SERVER_")
    }
    env.update(
        CATWALK_HOME=str(home),
        OFFLINE_FRAME_WIDTH="96",
        VIDEO_DURATION_SECONDS="1",
        RETRY_DELAY_SECONDS="0",
        **extra,
    )
    return env


def start_worker(port: int, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """``catwalk worker --port N`` in its own session; returns once it says it is running
    (with its output so far), or raises with that output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "catwalk.cli", "worker", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("catwalk worker exited early:\n" + "".join(lines))
        lines.append(line)
        if "worker running" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("catwalk worker did not start:\n" + "".join(lines))


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    """``catwalk <args>`` as a user runs it; its stdout, or a failure with all it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "catwalk.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
