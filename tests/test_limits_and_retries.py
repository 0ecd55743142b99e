"""Provider slots on Prefect global concurrency limits, and the transient-only retry policy."""

from __future__ import annotations

import threading
import time

import pytest
from catwalk.tasks._policy import retry_policy, retry_transient_only
from prefect import get_client, task
from prefect.settings import PREFECT_API_URL, temporary_settings

from catwalk.clients.limits import VIDEO_LIMIT, provider_slot, shared_limits_enabled, waiting_text
from catwalk.errors import PermanentProviderError, TransientProviderError
from tests.conftest import reset_settings


def test_slot_is_free_without_a_prefect_server() -> None:
    reasons: list[str | None] = []
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert not shared_limits_enabled()
        with provider_slot("video", on_wait=reasons.append):
            pass
    assert reasons == []  # nothing to wait for, nothing reported


def test_global_limit_holds_and_reports_waiting(prefect_server) -> None:
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(VIDEO_LIMIT, 1)
    holders, peak = 0, 0
    lock = threading.Lock()
    reasons: dict[int, list[str | None]] = {}

    def call(n: int) -> None:
        nonlocal holders, peak
        reasons[n] = []
        with provider_slot("video", on_wait=reasons[n].append):
            with lock:
                holders += 1
                peak = max(peak, holders)
            time.sleep(0.3)
            with lock:
                holders -= 1

    try:
        threads = [threading.Thread(target=call, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(VIDEO_LIMIT)
    assert peak == 1
    # Each caller said it was waiting, then cleared the reason once it held the slot.
    assert waiting_text("video") == "waiting for a Pika slot"
    assert all(r[0] == waiting_text("video") and r[-1] is None for r in reasons.values()), reasons


def test_unreachable_limit_service_waits_then_gives_up_at_the_deadline() -> None:
    """Run in a fresh process: Prefect's slot-acquisition service is a per-process singleton
    bound to the first API it talked to (the test server, in this session)."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    script = (
        "import json, sys, time\n"
        "from catwalk.clients.limits import provider_slot\n"
        "reasons, outcome = [], 'ran'\n"
        "try:\n"
        "    with provider_slot('image', on_wait=reasons.append, deadline=time.monotonic() + 1.5):\n"
        "        pass\n"
        "except TimeoutError as exc:\n"
        "    outcome = str(exc)\n"
        "print(json.dumps({'reasons': reasons, 'outcome': outcome}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PREFECT_API_URL": dead},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "deadline" in result["outcome"]  # gave up, never ran the call
    assert result["reasons"][0] == "waiting for a Nano Banana slot"
    assert "unavailable" in result["reasons"][-1]


def test_retry_policy_is_exponential_with_jitter_and_transient_only(monkeypatch) -> None:
    reset_settings(monkeypatch, RETRY_DELAY_SECONDS="2", TASK_RETRIES="3")
    policy = retry_policy()
    assert policy["retries"] == 3
    assert policy["retry_delay_seconds"] == [2.0, 6.0, 18.0]
    assert policy["retry_jitter_factor"] == 0.5
    assert policy["retry_condition_fn"] is retry_transient_only


def test_prefect_retries_transient_errors_with_a_jittered_delay_list(prefect_server) -> None:
    """Prefect 3.9 accepts a list of delays with a jitter factor and honours the condition."""
    calls = {"transient": 0, "permanent": 0}

    policy = {**retry_policy(), "retry_delay_seconds": [0.05, 0.1, 0.2], "retry_jitter_factor": 0.5}

    @task(**policy)
    def flaky(kind: str) -> str:
        calls[kind] += 1
        if kind == "transient" and calls[kind] <= 3:
            raise TransientProviderError("503", provider="test")
        if kind == "permanent":
            raise PermanentProviderError("400", provider="test")
        return "ok"

    assert flaky("transient") == "ok"
    assert calls["transient"] == 4  # three retries, then success
    with pytest.raises(PermanentProviderError):
        flaky("permanent")
    assert calls["permanent"] == 1  # never retried


def test_fault_plan_rates_are_probabilities() -> None:
    import random

    from catwalk.clients.offline import FaultPlan

    plan = FaultPlan("images:transient:30%", rng=random.Random(7))
    failures = 0
    for _ in range(1000):
        try:
            plan.check("images", "offline")
        except TransientProviderError:
            failures += 1
    assert 250 < failures < 350
    plan.check("video", "offline")  # steps not named never fail


def test_offline_video_cancels_its_request_at_the_deadline(tmp_path) -> None:
    from catwalk.clients.offline import OfflineVideoGenerator
    from catwalk.domain import VideoRequest

    generator = OfflineVideoGenerator(width=96, latency_seconds=5)
    request = VideoRequest(
        start_image=b"",
        end_image=b"",
        mime_type="image/png",
        style="smooth",
        duration_seconds=1,
        resolution="720p",
    )
    from catwalk.errors import JobTimedOut

    with pytest.raises(JobTimedOut, match="not ready within the job's time limit"):
        generator.animate(request, work_dir=tmp_path, deadline=time.monotonic() + 0.5)
    assert not list(tmp_path.glob("*.mp4"))  # gave up at the deadline: nothing rendered
