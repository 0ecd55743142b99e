"""Never pay twice: retried steps, re-run jobs, crashed workers and double submissions.

Counting fakes stand in for the providers (through ``clients.factory.override``); the flow
runs for real against Prefect's test server and a real database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from catwalk.db import queries, session_scope
from catwalk.db.models import LedgerEntry
from catwalk.flows.generate_product_video import generate_product_video
from prefect.settings import PREFECT_API_URL
from sqlalchemy import func, select

from catwalk import catalog
from catwalk.clients import factory
from catwalk.domain import JobStatus
from catwalk.errors import TransientProviderError
from catwalk.submission import submit_job
from tests.counting import CountingImages, CountingVideo

ROOT = Path(__file__).resolve().parent.parent


class NoLaunch:
    def __init__(self) -> None:
        self.launched: list[str] = []
        self._lock = threading.Lock()

    def launch(self, *, job_id: str, product_id: str, options: dict[str, object]) -> str | None:
        with self._lock:
            self.launched.append(job_id)
        return None


def _product(settings, product_id: str = "tee") -> str:
    photos = catalog.write_demo_photos(settings.catwalk_home / "photos")
    with session_scope() as session:
        queries.upsert_product(
            session=session,
            product_id=product_id,
            name=product_id,
            images=[str(photos["demo-tee"])],
        )
    return product_id


def _paid(job_id: str) -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(
            select(LedgerEntry.service, func.count())
            .where(LedgerEntry.job_id == job_id, LedgerEntry.succeeded.is_(True))
            .group_by(LedgerEntry.service)
        ).all()
    return {service: count for service, count in rows}


def _status(job_id: str) -> JobStatus:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        return job.status


def test_retried_steps_reuse_what_was_paid(settings, prefect_server) -> None:
    """A transient failure after the start keyframe and after the video submission: the
    retries buy neither again (2 keyframes, 1 video request, 1 re-attachment)."""
    pid = _product(settings)
    job_id = submit_job(pid, {}, launcher=NoLaunch()).job_id
    # The start keyframe is made, then the end keyframe fails once.
    images = CountingImages(fail=[None, TransientProviderError("503", provider="offline")])

    def flaky() -> None:
        raise TransientProviderError("connection reset while polling", provider="offline")

    video = CountingVideo(after_submit=[flaky])
    with factory.override(image=images, video=video):
        state = generate_product_video(pid, None, job_id, return_state=True)
    assert state.is_completed(), state
    assert images.calls == 2 and sorted(images.poses) == ["end", "start"]
    assert video.submitted == 1 and video.resumed == 1
    # One keyframe check (warn mode offline) between them.
    assert _paid(job_id) == {"nano_banana": 2, "keyframe_check": 1, "pika": 1}
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.retry_count >= 2


def test_rerun_after_worker_died_reuses_keyframes_and_request(settings, prefect_server) -> None:
    """The flow-run process is killed (SIGKILL) right after the video request is accepted;
    running the same job again re-attaches to that request and buys nothing new."""
    pid = _product(settings)
    job_id = submit_job(pid, {}, launcher=NoLaunch()).job_id
    script = (
        "import sys;"
        "from catwalk.clients import factory;"
        "from tests.counting import CountingImages, CountingVideo, kill_this_process;"
        "from catwalk.flows.generate_product_video import generate_product_video;"
        "factory._overrides.update(image=CountingImages(), video=CountingVideo(after_submit=[kill_this_process]));"
        f"generate_product_video({pid!r}, None, {job_id!r})"
    )
    env = {
        **os.environ,
        "CATWALK_HOME": str(settings.catwalk_home),
        "DATABASE_URL": settings.effective_database_url,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }
    died = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert died.returncode == -9, died.stderr[-2000:]
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.status is JobStatus.GENERATING_VIDEO
        saved_request = job.video_request_id
        assert saved_request and len(job.image_keys) == 2
    assert _paid(job_id) == {"nano_banana": 2, "keyframe_check": 1}

    images, video = CountingImages(), CountingVideo()
    with factory.override(image=images, video=video):
        state = generate_product_video(pid, None, job_id, return_state=True)
    assert state.is_completed(), state
    assert images.calls == 0
    assert video.submitted == 0 and video.resumed == 1
    # The re-run reuses the verdict saved for the same keyframes: no second check call.
    assert _paid(job_id) == {"nano_banana": 2, "keyframe_check": 1, "pika": 1}
    with session_scope() as session:
        ledger = session.scalars(select(LedgerEntry).where(LedgerEntry.service == "pika")).all()
        assert [e.provider_request_id for e in ledger] == [saved_request]


def test_second_generate_returns_the_job_in_flight_under_concurrency(settings) -> None:
    """Eight submissions racing on one product: one job, one launch, every caller gets it."""
    pid = _product(settings)
    launcher = NoLaunch()
    barrier = threading.Barrier(8)
    results: list[str] = []
    errors: list[BaseException] = []

    def submit() -> None:
        barrier.wait()
        try:
            results.append(submit_job(pid, {}, launcher=launcher).job_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results)) == 1 and len(results) == 8
    assert launcher.launched == [results[0]]
    with session_scope() as session:
        assert queries.active_job_for(session=session, product_id=pid).id == results[0]


def test_permanent_failure_is_not_retried_and_stays_its_own(settings, prefect_server) -> None:
    from catwalk.errors import PermanentProviderError

    first, second = _product(settings, "a"), _product(settings, "b")
    launcher = NoLaunch()
    job_a = submit_job(first, {}, launcher=launcher).job_id
    job_b = submit_job(second, {}, launcher=launcher).job_id
    images = CountingImages(fail=[PermanentProviderError("refused: safety", provider="offline")])
    with factory.override(image=images, video=CountingVideo()):
        failed = generate_product_video(first, None, job_a, return_state=True)
        done = generate_product_video(second, None, job_b, return_state=True)
    assert failed.is_failed() and done.is_completed()
    assert _status(job_a) is JobStatus.FAILED and _status(job_b) is JobStatus.COMPLETED
    assert images.calls == 2  # job b's two keyframes; job a's refusal was not retried
