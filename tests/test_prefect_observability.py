"""What an operator finds in the Prefect UI after ``catwalk worker --port N`` ran a job.

The whole production path as a user starts it (a subprocess per command), then everything
is read back from the Prefect API the UI itself reads: the run's name, its INFO logs (the
steps, catwalk's own loggers included), the job's artifacts, and ``/ui-settings``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from catwalk.deployments.stack import free_port

from catwalk import catalog
from tests.helpers import operator_env, run_cli, start_worker

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Worker:
    port: int
    api: str
    env: dict[str, str]
    output: list[str]


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    return run_cli(*args, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    home = tmp_path_factory.mktemp("observe") / "home"
    port = free_port()
    env = operator_env(home)
    proc, lines = start_worker(port, env)
    try:
        api = f"http://127.0.0.1:{port}/api"
        yield Worker(port, api, {**env, "PREFECT_API_URL": api}, lines)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)


def _post(worker: Worker, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    response = httpx.post(f"{worker.api}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _final_run(worker: Worker, job_id: str, timeout: float = 300) -> dict[str, object]:
    body = {"flow_runs": {"tags": {"all_": [f"job:{job_id}"]}}}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _post(worker, "/flow_runs/filter", body)
        if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return runs[0]
        time.sleep(1)
    pytest.fail(f"flow run of job {job_id} not finished after {timeout:.0f} s")


def test_worker_prints_a_ui_url_that_talks_to_its_own_port(worker: Worker) -> None:
    assert f"Prefect UI: http://127.0.0.1:{worker.port}/" in "".join(worker.output)
    settings = httpx.get(f"http://127.0.0.1:{worker.port}/ui-settings", timeout=10).json()
    assert settings["api_url"] == f"http://127.0.0.1:{worker.port}/api"
    server = httpx.get(f"{worker.api}/admin/settings", timeout=10).json()["server"]
    assert server["analytics_enabled"] is False  # the UI reads this before calling out


def test_a_job_run_is_named_logged_and_leaves_artifacts(worker: Worker) -> None:
    photos = catalog.write_demo_photos(Path(worker.env["CATWALK_HOME"]) / "photos")
    _cli(
        "products",
        "add",
        "Observed tee",
        str(photos["demo-tee"]),
        "--id",
        "seen-tee",
        env=worker.env,
    )
    out = _cli("generate", "seen-tee", env={**worker.env, "CATWALK_LAUNCHER": "deployment"})
    job_id = out.split()[1]

    run = _final_run(worker, job_id)
    assert run["state_type"] == "COMPLETED", run
    assert run["name"] == f"video · seen-tee · {job_id[:8]}"

    # Log records reach the API a moment after the run ends (a batching handler).
    deadline = time.monotonic() + 30
    while True:
        logs = _post(worker, "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}})
        messages = [(str(log["name"]), int(log["level"]), str(log["message"])) for log in logs]
        text = "\n".join(m for _, _, m in messages)
        # Wait for the job's own last line: "completed" alone also matches Prefect's earlier
        # "All deployment steps completed", which made this loop stop before the rest arrived.
        if f"job {job_id} completed" in text or time.monotonic() > deadline:
            break
        time.sleep(1)
    info = [m for m in messages if m[1] == 20]
    assert any(f"job {job_id} for product seen-tee started" in m for _, _, m in info), text
    assert any("keyframe stored" in m for _, _, m in info), text
    assert any("video stored" in m for _, _, m in info), text
    assert any(f"job {job_id} completed" in m for _, _, m in info), text
    # catwalk's own loggers (not only get_run_logger) join the run's logs at INFO.
    assert any(name.startswith("catwalk") for name, _, _ in info), {n for n, _, _ in messages}

    task_runs = _post(worker, "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    names = {str(t["name"]) for t in task_runs}
    for step in ("start-job", "generate-keyframes", "animate-keyframes", "publish-video"):
        assert any(n.startswith(step) for n in names), names

    artifacts = _post(
        worker, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    by_type = {str(a["type"]): a for a in artifacts}
    assert set(by_type) >= {"markdown", "table", "progress"}, artifacts
    summary = str(by_type["markdown"]["data"])
    assert "start keyframe" in summary and "end keyframe" in summary and "video" in summary
    assert by_type["markdown"]["key"] == "video-seen-tee"
    assert by_type["progress"]["data"] == 100.0
    ledger = by_type["table"]["data"]
    assert "nano_banana" in str(ledger) and "pika" in str(ledger)
