"""``catwalk worker`` is restartable: after ``kill -9`` of the first, a second one on the
same port starts cleanly (issue #13), adopting the server the first left running and
stopping the first's orphaned ``prefect worker`` so two workers never share the runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from catwalk.deployments.stack import free_port, process_alive

ROOT = Path(__file__).resolve().parent.parent


def _start_worker(port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "catwalk.cli", "worker", "--port", str(port), "--no-deploy"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "catwalk worker exited early:\n" + "".join(lines)
        lines.append(line)
        if "worker running" in line:
            return proc
    pytest.fail("catwalk worker did not start:\n" + "".join(lines))


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(pid):
        time.sleep(0.2)
    assert not process_alive(pid), f"pid {pid} still running"


@pytest.mark.slow
def test_second_worker_after_kill_9_of_the_first_starts_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", "DATABASE_URL", "REDIS_URL")
    }
    env.update(CATWALK_HOME=str(tmp_path / "home"))
    record_path = tmp_path / "home" / "prefect" / f"server-{port}.json"
    api = f"http://127.0.0.1:{port}/api"
    first = _start_worker(port, env)
    second = None
    record: dict[str, int] = {}
    try:
        record = json.loads(record_path.read_text())
        assert record["owner_pid"] == first.pid
        assert process_alive(record["server_pid"]) and process_alive(record["worker_pid"])
        os.kill(first.pid, signal.SIGKILL)  # the catwalk worker only: its children live on
        first.wait(10)
        assert httpx.get(f"{api}/health", timeout=5).status_code == 200  # the orphaned server

        second = _start_worker(port, env)
        adopted = json.loads(record_path.read_text())
        assert adopted["owner_pid"] == second.pid
        assert adopted["server_pid"] == record["server_pid"]  # adopted, not a second server
        _wait_gone(record["worker_pid"], 30)  # the orphaned prefect worker was stopped
        assert (
            process_alive(adopted["worker_pid"]) and adopted["worker_pid"] != record["worker_pid"]
        )
        workers = httpx.post(f"{api}/work_pools/catwalk/workers/filter", json={}, timeout=10)
        assert workers.status_code == 200

        os.killpg(second.pid, signal.SIGINT)
        second.wait(60)
        _wait_gone(adopted["server_pid"], 30)  # the adopted server stops with its new owner
        _wait_gone(adopted["worker_pid"], 30)
        assert not record_path.exists()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{api}/health", timeout=2)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for key in ("server_pid", "worker_pid"):
            pid = record.get(key, 0)
            if pid and process_alive(pid):
                os.killpg(pid, signal.SIGKILL)
