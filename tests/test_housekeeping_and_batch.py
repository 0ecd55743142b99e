"""Housekeeping (crashed, vanished, never-launched runs; pending deletions) and the batch."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from catwalk.db import queries, session_scope
from catwalk.db.base import utcnow
from catwalk.db.models import PendingDeletion
from catwalk.flows.generate_missing_videos import generate_missing_videos
from catwalk.tasks.batch import find_products_needing_video, start_video_jobs
from catwalk.tasks.housekeeping import MAX_REATTACH, reconcile_jobs, retry_pending_deletions
from prefect import flow, get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Completed, Crashed, Failed, Running

from catwalk import catalog
from catwalk.domain import JobStatus
from catwalk.errors import LimitExceeded
from catwalk.submission import submit_job


class RecordingLauncher:
    def __init__(self, refuse_after: int | None = None) -> None:
        self.calls: list[dict[str, object]] = []
        self._refuse_after = refuse_after

    def launch(
        self,
        *,
        job_id: str,
        product_id: str,
        options: dict[str, object],
        run_key: str | None = None,
    ) -> str:
        if self._refuse_after is not None and len(self.calls) >= self._refuse_after:
            raise LimitExceeded("daily generation limit of 2 reached", retry_after_seconds=3600)
        self.calls.append({"job_id": job_id, "run_key": run_key})
        return str(uuid.uuid4())


class LaunchFails:
    """A submission whose launch did not reach Prefect: the job is recorded, no run id."""

    def launch(self, *, job_id: str, product_id: str, options: dict[str, object]) -> None:
        return None


@flow(name="stand-in")
def _stand_in() -> None:
    """A flow only used to create runs in the test server."""


def _products(settings, *ids: str) -> None:
    photos = catalog.write_demo_photos(settings.catwalk_home / "photos")
    with session_scope() as session:
        for pid in ids:
            queries.upsert_product(
                session=session, product_id=pid, name=pid, images=[str(photos["demo-tee"])]
            )


def _job_with_run(product_id: str, state) -> tuple[str, str]:
    job_id = submit_job(product_id, {}, launcher=RecordingLauncher()).job_id
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_stand_in, state=state)
        run_id = str(run.id)
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        job.flow_run_id = run_id
        job.status = JobStatus.GENERATING_VIDEO
        job.started_at = utcnow()
    return job_id, run_id


def _job(job_id: str):
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        session.expunge(job)
        return job


def test_reconcile_reattaches_relaunches_and_fails(settings, prefect_server) -> None:
    _products(settings, "crashed", "failed", "vanished", "unlaunched", "healthy", "worn-out")
    crashed, crashed_run = _job_with_run("crashed", Crashed(message="worker killed"))
    failed, _ = _job_with_run("failed", Failed(message="boom in start-job"))
    healthy, healthy_run = _job_with_run("healthy", Running())
    vanished = submit_job("vanished", {}, launcher=RecordingLauncher()).job_id
    gone = str(uuid.uuid4())
    with session_scope() as session:
        queries.get_job(session=session, job_id=vanished).flow_run_id = gone
    unlaunched = submit_job("unlaunched", {}, launcher=LaunchFails()).job_id
    worn_out, _ = _job_with_run("worn-out", Crashed())
    with session_scope() as session:
        # A job whose run was already scheduled again MAX_REATTACH times is failed instead.
        for _ in range(MAX_REATTACH):
            queries.record_event(session=session, job_id=worn_out, step="reattach", kind="info")

    launcher = RecordingLauncher()
    report = reconcile_jobs(grace_seconds=0, launcher=launcher)

    assert report["reattached"] == [crashed]
    assert sorted(report["failed"]) == sorted([failed, worn_out])
    assert report["relaunched"] == [vanished]
    assert report["launched"] == [unlaunched]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(crashed_run).state.type is StateType.SCHEDULED
        assert client.read_flow_run(healthy_run).state.type is StateType.RUNNING
    assert _job(crashed).status is JobStatus.GENERATING_VIDEO  # same job, same run, resumed later
    assert (
        _job(failed).status is JobStatus.FAILED
        and "boom in start-job" in _job(failed).error_message
    )
    assert "crashed 4 times" in _job(worn_out).error_message
    assert _job(vanished).flow_run_id not in (None, gone)
    assert _job(unlaunched).flow_run_id is not None
    assert _job(healthy).status is JobStatus.GENERATING_VIDEO
    assert {c["run_key"] for c in launcher.calls if c["job_id"] == vanished} == {
        f"job-{vanished}-relaunch-1"
    }


def test_reconcile_crashes_a_run_silent_past_the_job_timeout(settings, prefect_server) -> None:
    _products(settings, "zombie")
    job_id, run_id = _job_with_run("zombie", Running())
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        job.started_at = utcnow() - dt.timedelta(seconds=settings.job_timeout_seconds + 600)
    report = reconcile_jobs(grace_seconds=0, launcher=RecordingLauncher())
    assert report["reattached"] == [job_id]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).state.type is StateType.SCHEDULED


def test_completed_runs_are_left_alone(settings, prefect_server) -> None:
    _products(settings, "done")
    job_id, _ = _job_with_run("done", Completed())
    report = reconcile_jobs(grace_seconds=0, launcher=RecordingLauncher())
    assert all(job_id not in ids for ids in report.values())


def test_pending_deletions_are_retried(settings, prefect_server) -> None:
    media = settings.media_dir / "products" / "old"
    media.mkdir(parents=True)
    (media / "video.mp4").write_bytes(b"old")
    with session_scope() as session:
        session.add(PendingDeletion(key="products/old/video.mp4", reason="replaced"))
    assert retry_pending_deletions() == {"deleted": 1, "still_failing": 0}
    assert not (media / "video.mp4").exists()
    with session_scope() as session:
        assert queries.pending_deletions(session=session, limit=10) == []


def test_batch_finds_missing_and_stale_videos(settings) -> None:
    _products(settings, "no-video", "stale", "fresh", "busy")
    with session_scope() as session:
        stale = queries.get_product(session=session, product_id="stale")
        stale.video_key, stale.video_updated_at = (
            "products/stale/v.mp4",
            utcnow() - dt.timedelta(days=40),
        )
        fresh = queries.get_product(session=session, product_id="fresh")
        fresh.video_key, fresh.video_updated_at = (
            "products/fresh/v.mp4",
            utcnow() - dt.timedelta(days=1),
        )
    submit_job("busy", {}, launcher=RecordingLauncher())
    found = find_products_needing_video.fn(30)
    assert found == ["no-video", "stale"]


@pytest.mark.both_dbs
def test_batch_stops_cleanly_at_the_daily_limit(settings, prefect_server) -> None:
    _products(settings, "p1", "p2", "p3", "p4")
    launcher = RecordingLauncher(refuse_after=2)
    result = start_video_jobs(["p1", "p2", "p3", "p4"], launcher=launcher)
    assert len(result["started"]) == 2
    assert "daily generation limit" in str(result["stopped"])
    assert [c["job_id"] for c in launcher.calls] == result["started"]


def test_batch_flow_runs_end_to_end(settings, prefect_server, monkeypatch) -> None:
    """The scheduled flow itself, launching through a recording launcher."""
    _products(settings, "x1", "x2")
    launcher = RecordingLauncher()
    monkeypatch.setattr(
        "catwalk.deployments.launcher.DeploymentLauncher", lambda _settings: launcher
    )
    result = generate_missing_videos(stale_after_days=30)
    assert len(result["started"]) == 2 and len(launcher.calls) == 2
