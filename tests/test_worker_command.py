"""``catwalk worker`` end to end: starts its server, pool, limits and worker; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from catwalk.deployments.stack import WORK_POOL, free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_worker_command_starts_and_stops_its_stack(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", "DATABASE_URL", "REDIS_URL")
    }
    env.update(
        CATWALK_HOME=str(tmp_path / "home"), MAX_CONCURRENT_JOBS="4", VIDEO_PROVIDER_CONCURRENCY="2"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "catwalk.cli", "worker", "--port", str(port), "--no-deploy"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "catwalk worker exited early:\n" + "".join(lines)
            lines.append(line)
            if "worker running" in line:
                break
        pool = httpx.get(f"{api}/work_pools/{WORK_POOL}", timeout=10).json()
        assert pool["type"] == "process" and pool["concurrency_limit"] == 4
        limit = httpx.get(f"{api}/v2/concurrency_limits/provider:pika", timeout=10).json()
        assert limit["limit"] == 2
        assert (tmp_path / "home" / "prefect").is_dir()  # the server's home is under CATWALK_HOME
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/health", timeout=2)


def test_a_stop_swallowed_inside_a_repair_still_stops_the_supervisor() -> None:
    """Prefect's sync client can turn a Ctrl-C into its own error inside a repair; the flag
    the signal handler sets still stops the supervisor (it used to wait for a SIGKILL, which
    orphaned the ``prefect worker``)."""
    import threading

    from catwalk.deployments import stack

    stop = threading.Event()
    rounds: list[int] = []

    def repair_that_swallows_the_interrupt() -> None:
        rounds.append(1)
        stop.set()  # what the handler does before its KeyboardInterrupt is swallowed

    worker = subprocess.Popen(["sleep", "120"])
    outcome: list[BaseException | int] = []

    def run() -> None:
        try:
            outcome.append(
                stack.supervise(
                    worker,
                    every=60,
                    repairs=(("r", repair_that_swallows_the_interrupt),),
                    stop=stop,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome.append(exc)

    supervisor = threading.Thread(target=run, daemon=True)
    supervisor.start()
    supervisor.join(20)  # a hang guard, far below the 60 s round it used to sit out
    worker.kill()
    worker.wait()
    assert len(outcome) == 1 and isinstance(outcome[0], KeyboardInterrupt), outcome
    assert rounds == [1]
