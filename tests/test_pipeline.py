"""The whole job end to end on the embedded defaults: keyframes, video, publish."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from catwalk.db import queries, session_scope

from catwalk.cli.demo import seed_demo_catalog
from catwalk.clients import factory
from catwalk.clients.media import probe_video
from catwalk.clients.storage import LocalBlobStore
from catwalk.domain import JobStatus
from catwalk.errors import TransientStorageError
from tests.conftest import reset_settings
from tests.helpers import atom_offsets, frames, load_job, run_job_inline

pytestmark = pytest.mark.usefixtures("prefect_server")


def _product_files(settings, product_id: str) -> list[Path]:
    from catwalk.clients.keys import product_slug

    folder = settings.media_dir / "products" / product_slug(product_id)
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_demo_product_gets_a_real_video(settings) -> None:
    seed_demo_catalog()
    job = run_job_inline("demo-tee")

    assert job.status is JobStatus.COMPLETED
    assert job.progress == 100
    assert job.error_message is None
    assert job.product.video_key == job.video_key
    store = factory.blob_store()
    assert isinstance(store, LocalBlobStore)
    video = store.local_path(job.video_key)
    poster = store.local_path(job.poster_key)
    assert video.is_file() and poster.is_file()

    facts = probe_video(video)
    assert (facts.codec, facts.pixel_format) == ("h264", "yuv420p")
    assert facts.duration_seconds == pytest.approx(settings.video_duration_seconds, abs=0.1)
    offsets = atom_offsets(video)
    assert offsets["moov"] < offsets["mdat"], "faststart: the index must come before the media"

    # The video moves from the start pose to the end pose: first and last frames differ a
    # lot, and they match the stored keyframes they came from.
    decoded = frames(video)
    first, last = decoded[0], decoded[-1]
    assert np.abs(first - last).mean() > 20
    from PIL import Image

    start_key, end_key = job.image_keys["start"], job.image_keys["end"]
    start = np.asarray(Image.open(store.local_path(start_key)).convert("RGB"), dtype=np.int16)
    end = np.asarray(Image.open(store.local_path(end_key)).convert("RGB"), dtype=np.int16)
    assert np.abs(first - start).mean() < np.abs(first - end).mean()
    assert np.abs(last - end).mean() < np.abs(last - start).mean()

    steps = [(e.step, e.kind) for e in job.events]
    for step in ("images", "video", "publish"):
        assert (step, "started") in steps and (step, "succeeded") in steps

    with session_scope() as session:
        ledger = queries.ledger_for_job(session=session, job_id=job.id)
        rows = [(r.service, r.operation, r.unit, r.units, r.amount) for r in ledger]
    assert rows == [
        ("nano_banana", "generate_image", "output_token", Decimal(1290), Decimal(0)),
        ("nano_banana", "generate_image", "output_token", Decimal(1290), Decimal(0)),
        # The keyframe check (warn mode offline): the local judge, never billed.
        ("keyframe_check", "judge_keyframes", "call", Decimal(1), Decimal(0)),
        ("pika", "animate", "second", Decimal(settings.video_duration_seconds), Decimal(0)),
    ]
    assert job.total_cost == Decimal(0)


def test_generating_twice_leaves_one_video_and_points_at_the_new_one(settings) -> None:
    seed_demo_catalog()
    first = run_job_inline("demo-dress")
    second = run_job_inline("demo-dress", {"videoStyle": "dynamic"})

    assert first.id != second.id
    assert second.status is JobStatus.COMPLETED
    assert second.product.video_key == second.video_key != first.video_key
    files = _product_files(settings, "demo-dress")
    videos = [f for f in files if f.suffix == ".mp4"]
    posters = [f for f in files if f.name == "poster.jpg"]
    assert [v.parent.name for v in videos] == [second.id]
    assert [p.parent.name for p in posters] == [second.id]
    with session_scope() as session:
        assert not queries.pending_deletions(session=session)


@pytest.mark.parametrize(
    ("fault", "retried"),
    [("images:transient", 3), ("video:transient", 3), ("images", 0), ("video", 0)],
)
def test_a_failing_step_fails_the_job_and_keeps_the_previous_video(
    settings, monkeypatch, fault: str, retried: int
) -> None:
    seed_demo_catalog()
    good = run_job_inline("demo-jacket")
    assert good.status is JobStatus.COMPLETED

    reset_settings(monkeypatch, OFFLINE_FAIL_STEPS=fault)
    bad = run_job_inline("demo-jacket")

    assert bad.status is JobStatus.FAILED
    step = fault.split(":")[0]
    kind = "transient" if "transient" in fault else "permanent"
    assert bad.error_message is not None
    assert f"injected {kind} failure in {step}" in bad.error_message
    assert bad.retry_count == retried
    assert bad.product.video_key == good.video_key
    assert factory.blob_store().head(good.video_key) is not None


class _FailingReads(LocalBlobStore):
    """Local storage whose reads of videos fail, as a flaky bucket would."""

    def get_bytes(self, key: str) -> bytes:
        if key.endswith(".mp4"):
            raise TransientStorageError("storage read timed out")
        return super().get_bytes(key)


def test_a_failing_publish_keeps_the_previous_video(settings) -> None:
    seed_demo_catalog()
    good = run_job_inline("demo-hoodie")
    with factory.override(storage=_FailingReads(settings.media_dir)):
        bad = run_job_inline("demo-hoodie")

    assert bad.status is JobStatus.FAILED
    assert bad.error_message == "publishing video: storage read timed out"
    assert bad.retry_count == 3
    assert bad.product.video_key == good.video_key
    assert factory.blob_store().head(good.video_key) is not None


def test_a_retry_reuses_paid_keyframes(settings, monkeypatch) -> None:
    """The video step fails twice then succeeds: keyframes are bought once, not three times."""
    seed_demo_catalog()
    reset_settings(monkeypatch, OFFLINE_FAIL_STEPS="video:transient:2")
    job = run_job_inline("demo-tee")

    assert job.status is JobStatus.COMPLETED
    assert job.retry_count == 2
    with session_scope() as session:
        ledger = queries.ledger_for_job(session=session, job_id=job.id)
    assert [r.operation for r in ledger] == [
        "generate_image",
        "generate_image",
        "judge_keyframes",
        "animate",
    ]


def test_a_product_without_image_fails_with_a_clear_reason(settings) -> None:
    from catwalk.errors import ProductImageError
    from catwalk.submission import submit_job
    from tests.helpers import RecordingLauncher

    with session_scope() as session:
        queries.upsert_product(session=session, product_id="bare", name="Bare", images=[])
    with pytest.raises(ProductImageError, match="product 'bare' has no image"):
        submit_job("bare", {}, launcher=RecordingLauncher())
    with session_scope() as session:
        assert not queries.list_jobs(session=session)


def test_a_broken_image_url_fails_the_job_after_submission(settings, tmp_path) -> None:
    with session_scope() as session:
        queries.upsert_product(
            session=session, product_id="gone", name="Gone", images=["http://127.0.0.1:9/photo.jpg"]
        )
    job = run_job_inline("gone")
    assert job.status is JobStatus.FAILED
    assert job.error_message.startswith(
        "generating keyframes: cannot fetch image http://127.0.0.1:9"
    )
    assert load_job(job.id).total_cost == Decimal(0)


def test_a_job_past_its_time_limit_fails_with_a_clear_reason(settings, monkeypatch) -> None:
    seed_demo_catalog()
    reset_settings(monkeypatch, JOB_TIMEOUT_SECONDS="10", OFFLINE_VIDEO_LATENCY_SECONDS="60")
    job = run_job_inline("demo-tee")

    assert job.status is JobStatus.FAILED
    assert (
        job.error_message == "rendering video: the video was not ready within the job's time limit"
    )
    assert job.retry_count == 0, "a timed-out job is not retried past its limit"
    assert job.completed_at is not None
    assert (job.completed_at - job.started_at).total_seconds() < 20


class _BrokenLauncher:
    def launch(
        self, *, job_id: str, product_id: str, options: dict, run_key: str | None = None
    ) -> str | None:
        raise OSError("cannot start the interpreter")


def test_a_job_that_cannot_be_started_fails_instead_of_waiting_forever(settings) -> None:
    from catwalk.errors import LaunchError
    from catwalk.submission import submit_job
    from tests.helpers import RecordingLauncher

    seed_demo_catalog()
    with pytest.raises(
        LaunchError, match="could not be started: internal error \\(OSError\\): cannot start"
    ) as raised:
        submit_job("demo-tee", {}, launcher=_BrokenLauncher())
    stranded = load_job(raised.value.job_id)
    assert stranded.status is JobStatus.FAILED
    assert (
        stranded.error_message
        == "submit: could not start the job: internal error (OSError): cannot start the interpreter"
    )

    # The product is free again: the next submission records and launches a new job.
    again = submit_job("demo-tee", {}, launcher=RecordingLauncher())
    assert again.created and again.job_id != stranded.id
    with session_scope() as session:
        from catwalk.db.models import UsageDay

        assert sum(day.generations for day in session.query(UsageDay).all()) == 1
