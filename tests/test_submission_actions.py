"""retry_job, retry_cost and cancel_job, with real flow runs on the offline providers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from catwalk.db import queries, session_scope
from catwalk.db.base import utcnow
from catwalk.flows.generate_product_video import generate_product_video

from catwalk import submission
from catwalk.cli.demo import seed_demo_catalog
from catwalk.config import Settings
from catwalk.domain import JobOptions, JobStatus
from catwalk.errors import InputError
from tests.conftest import reset_settings


@dataclass
class Recorder:
    launches: list[dict[str, Any]] = field(default_factory=list)

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], run_key: str | None = None
    ) -> str | None:
        self.launches.append({"job_id": job_id, "run_key": run_key})
        return f"run-{len(self.launches)}"


@pytest.fixture
def catalog(settings: Settings) -> Settings:
    seed_demo_catalog()
    return settings


def _job(job_id: str) -> Any:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        session.expunge(job)
        return job


def _ledger(job_id: str) -> list[tuple[str, bool]]:
    with session_scope() as session:
        return [
            (e.service, e.succeeded) for e in queries.ledger_for_job(session=session, job_id=job_id)
        ]


def _priced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[[price]]\nprovider = "offline"\nmodel = "*"\nunit = "image"\nunit_price = "0.05"\nprice_date = "2026-01-01"\n'
        '[[price]]\nprovider = "offline"\nmodel = "*"\nresolution = "720p"\nunit = "second"\n'
        'unit_price = "0.04"\nprice_date = "2026-01-01"\n'
    )
    return reset_settings(monkeypatch, CATWALK_PRICES_FILE=str(prices))


def test_use_launcher_replaces_the_default_for_the_block(catalog: Settings) -> None:
    recorder = Recorder()
    with submission.use_launcher(recorder):
        result = submission.submit_job("demo-tee", {})
    assert recorder.launches == [{"job_id": result.job_id, "run_key": None}]
    assert _job(result.job_id).flow_run_id == "run-1"
    assert isinstance(submission.default_launcher(catalog), submission.LocalProcessLauncher)


def test_retry_after_a_video_failure_reuses_keyframes_and_the_saved_request(
    catalog: Settings, prefect_server: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reset_settings(monkeypatch, OFFLINE_FAIL_STEPS="video", TASK_RETRIES="0")
    _priced(monkeypatch, tmp_path)
    first = submission.submit_job("demo-tee", {}, launcher=Recorder())
    generate_product_video("demo-tee", None, first.job_id, return_state=True)
    failed = _job(first.job_id)
    assert failed.status is JobStatus.FAILED and set(failed.image_keys) == {"start", "end"}
    assert failed.video_request_urls  # the provider accepted the request before failing

    cost = submission.retry_cost(first.job_id)
    assert cost == submission.RetryCost(Decimal(0), 0, False)

    reset_settings(monkeypatch, OFFLINE_FAIL_STEPS="")
    recorder = Recorder()
    again = submission.retry_job(first.job_id, launcher=recorder)
    assert (again.job_id, again.status, again.created) == (first.job_id, JobStatus.PENDING, True)
    assert recorder.launches == [{"job_id": first.job_id, "run_key": f"job-{first.job_id}-retry-1"}]
    pending = _job(first.job_id)
    assert (pending.status, pending.progress, pending.error_message, pending.completed_at) == (
        JobStatus.PENDING,
        0,
        None,
        None,
    )
    assert pending.flow_run_id == "run-1"

    generate_product_video("demo-tee", None, first.job_id, return_state=True)
    done = _job(first.job_id)
    assert done.status is JobStatus.COMPLETED and done.progress == 100
    # Two keyframes bought once; the video charged once, when it was finally delivered.
    assert sorted(_ledger(first.job_id)) == [
        ("keyframe_check", True),
        ("nano_banana", True),
        ("nano_banana", True),
        ("pika", True),
    ]


def test_retry_cost_counts_only_the_steps_not_paid_for(
    catalog: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _priced(monkeypatch, tmp_path)
    with session_scope() as session:
        job, _ = queries.create_job(session=session, product_id="demo-dress", options=JobOptions())
        job.status = JobStatus.FAILED
        job_id = job.id
    # Nothing made: two keyframes at $0.05 and 2 s of video at $0.04.
    assert submission.retry_cost(job_id) == submission.RetryCost(Decimal("0.18"), 2, True)
    with session_scope() as session:
        queries.get_job(session=session, job_id=job_id).image_keys = {"start": "k"}  # type: ignore[union-attr]
    assert submission.retry_cost(job_id) == submission.RetryCost(Decimal("0.13"), 1, True)


def test_retry_cost_says_when_a_price_is_missing(
    catalog: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prices = tmp_path / "empty.toml"
    prices.write_text("")
    reset_settings(monkeypatch, CATWALK_PRICES_FILE=str(prices))
    with session_scope() as session:
        job, _ = queries.create_job(session=session, product_id="demo-dress", options=JobOptions())
        job.status = JobStatus.CANCELLED
        job_id = job.id
    cost = submission.retry_cost(job_id)
    assert cost.amount is None and "no price configured" in cost.note


@pytest.mark.both_dbs
def test_retry_refuses_running_jobs_and_busy_products(catalog: Settings) -> None:
    running = submission.submit_job("demo-tee", {}, launcher=Recorder())
    with pytest.raises(InputError, match="only failed or cancelled jobs can be retried"):
        submission.retry_job(running.job_id, launcher=Recorder())
    with session_scope() as session:
        old, _ = queries.create_job(session=session, product_id="demo-jacket", options=JobOptions())
        old.status = JobStatus.FAILED
        old_id = old.id
    busy = submission.submit_job("demo-jacket", {}, launcher=Recorder())
    with pytest.raises(InputError, match=f"already has job {busy.job_id} in progress"):
        submission.retry_job(old_id, launcher=Recorder())
    with pytest.raises(InputError, match="unknown job"):
        submission.retry_job("nope")


def test_cancel_a_job_that_never_started_ends_it_at_once(
    catalog: Settings, prefect_server: None
) -> None:
    submitted = submission.submit_job("demo-hoodie", {}, launcher=Recorder())
    assert submission.cancel_job(submitted.job_id) is JobStatus.CANCELLED
    # The run that starts late finds the job final and does nothing (and pays nothing).
    state = generate_product_video("demo-hoodie", None, submitted.job_id, return_state=True)
    assert state.result()["status"] == "skipped"
    job = _job(submitted.job_id)
    assert (job.status, job.error_message) == (JobStatus.CANCELLED, "cancelled by an admin")
    assert _ledger(submitted.job_id) == []
    # The product is free again: a new job can start.
    assert submission.submit_job("demo-hoodie", {}, launcher=Recorder()).created
    # Cancelling a finished job changes nothing.
    assert submission.cancel_job(submitted.job_id) is JobStatus.CANCELLED


def test_cancel_a_running_job_stops_it_in_the_video_step(
    catalog: Settings, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings(monkeypatch, OFFLINE_VIDEO_LATENCY_SECONDS="3", TASK_RETRIES="0")
    submitted = submission.submit_job("demo-dress", {}, launcher=Recorder())
    runner = threading.Thread(
        target=generate_product_video,
        args=("demo-dress", None, submitted.job_id),
        kwargs={"return_state": True},
    )
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while _job(submitted.job_id).status is not JobStatus.GENERATING_VIDEO:
            assert time.monotonic() < deadline, "the job never reached the video step"
            time.sleep(0.05)
        assert submission.cancel_job(submitted.job_id) is JobStatus.GENERATING_VIDEO
        assert _job(submitted.job_id).cancel_requested
    finally:
        runner.join(timeout=120)
    job = _job(submitted.job_id)
    assert (job.status, job.error_message) == (JobStatus.CANCELLED, "cancelled by an admin")
    assert job.completed_at is not None and job.completed_at <= utcnow()
    assert submission.cancel_job(submitted.job_id) is JobStatus.CANCELLED  # idempotent


def test_cancel_while_making_keyframes_never_pays_for_the_video(
    catalog: Settings, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings(monkeypatch, OFFLINE_IMAGE_LATENCY_SECONDS="1.5", TASK_RETRIES="0")
    submitted = submission.submit_job("demo-jacket", {}, launcher=Recorder())
    runner = threading.Thread(
        target=generate_product_video,
        args=("demo-jacket", None, submitted.job_id),
        kwargs={"return_state": True},
    )
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while _job(submitted.job_id).status is not JobStatus.GENERATING_IMAGES:
            assert time.monotonic() < deadline, "the job never started its keyframes"
            time.sleep(0.05)
        assert submission.cancel_job(submitted.job_id) is JobStatus.GENERATING_IMAGES
    finally:
        runner.join(timeout=120)
    job = _job(submitted.job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.video_request_id is None
    assert [service for service, _ in _ledger(submitted.job_id)] == ["nano_banana", "nano_banana"]
