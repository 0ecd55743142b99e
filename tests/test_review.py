"""Review points, embedded mode: real flow runs on the offline providers, real database.

The suspended-run path (a worker, a deployment, the Prefect UI's resume form) is in
tests/test_review_stack.py.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from catwalk.db import jobs, queries, session_scope
from catwalk.db.base import utcnow
from catwalk.db.models import UsageDay, VideoJob
from catwalk.flows.generate_product_video import generate_product_video
from sqlalchemy import select, update

from catwalk import review, submission
from catwalk.cli.demo import seed_demo_catalog
from catwalk.clients import factory
from catwalk.config import Settings
from catwalk.domain import JobStatus
from catwalk.errors import InputError, ReviewConflict
from tests.conftest import reset_settings

PRICES = (
    '[[price]]\nprovider = "offline"\nmodel = "*"\nunit = "image"\nunit_price = "0.05"\n'
    'price_date = "2026-01-01"\n'
    '[[price]]\nprovider = "offline"\nmodel = "*"\nresolution = "720p"\nunit = "second"\n'
    'unit_price = "0.04"\nprice_date = "2026-01-01"\n'
)


@dataclass
class InlineLauncher:
    """Runs the job's flow at once in this process, as the embedded queue would."""

    launches: list[str] = field(default_factory=list)

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], run_key: str | None = None
    ) -> str | None:
        self.launches.append(run_key or job_id)
        generate_product_video(product_id, options, job_id, return_state=True)
        return None


@dataclass
class Recorder:
    def launch(self, **_: Any) -> str | None:
        return None


@pytest.fixture
def priced(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    seed_demo_catalog()
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    return reset_settings(
        monkeypatch, CATWALK_PRICES_FILE=str(prices), KEYFRAME_CHECK="off", TASK_RETRIES="0"
    )


def _job(job_id: str) -> VideoJob:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        _ = job.product.video_key
        session.expunge(job)
        return job


def _calls(job_id: str) -> list[str]:
    with session_scope() as session:
        return sorted(e.service for e in queries.ledger_for_job(session=session, job_id=job_id))


def _problems() -> list[str]:
    with session_scope() as session:
        return jobs.check_invariants(session=session, grace_seconds=0)


def _reserved() -> Decimal:
    with session_scope() as session:
        return sum((d.reserved_cost for d in session.scalars(select(UsageDay))), Decimal(0))


def _waiting_job(review_mode: str, product: str = "demo-tee") -> str:
    sub = submission.submit_job(product, {"review": review_mode}, launcher=Recorder())
    state = generate_product_video(product, {"review": review_mode}, sub.job_id, return_state=True)
    assert state.result()["status"] == "AWAITING_APPROVAL"
    return sub.job_id


def test_keyframes_review_stops_before_the_video_and_approval_buys_one(
    priced: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _waiting_job("keyframes")
    job = _job(job_id)
    assert (job.status, job.awaiting, job.review_round) == (
        JobStatus.AWAITING_APPROVAL,
        "keyframes",
        0,
    )
    assert set(job.image_keys) == {"start", "end"}
    assert job.awaiting_since is not None
    video_price = Decimal("0.04") * priced.video_duration_seconds  # 720p at $0.04 a second
    assert job.review_quote == video_price
    assert _calls(job_id) == ["nano_banana", "nano_banana"]  # no video bought
    assert job.product.video_key is None
    assert _problems() == []  # the reservation is still held, as for any job in flight
    # A second "generate" while it waits gets the waiting job, not a new one.
    again = submission.submit_job("demo-tee", {}, launcher=Recorder())
    assert (again.job_id, again.created) == (job_id, False)
    queue = review.waiting()
    assert [(w.job_id, w.point, w.quote) for w in queue] == [(job_id, "keyframes", video_price)]

    # Approved hours after it started: its time limits count from the decision, so the video
    # step is not "out of time" (JOB_MAX_LIFETIME_SECONDS is 30 min here).
    with session_scope() as session:
        session.execute(
            update(VideoJob)
            .where(VideoJob.id == job_id)
            .values(started_at=utcnow() - dt.timedelta(hours=3))
        )
    reset_settings(monkeypatch, OFFLINE_VIDEO_LATENCY_SECONDS="2")  # a render that takes time
    launcher = InlineLauncher()
    decided = review.decide(job_id, "approve", by="test", launcher=launcher)
    assert (decided.point, decided.decision) == ("keyframes", "approve")
    done = _job(job_id)
    assert done.status is JobStatus.COMPLETED, done.error_message
    assert _calls(job_id) == ["nano_banana", "nano_banana", "pika"]  # one video, images reused
    assert done.product.video_key == done.video_key
    assert done.review["approved"] == ["keyframes"]
    assert [d["by"] for d in done.review["decisions"]] == ["test"]
    assert launcher.launches == [f"job-{job_id}-review-1"]
    assert _problems() == []


def test_reject_at_keyframes_cancels_and_gives_back_what_was_not_spent(priced: Settings) -> None:
    job_id = _waiting_job("keyframes")
    reserved_before = _reserved()
    review.decide(job_id, "reject", by="test", note="wrong colour", launcher=InlineLauncher())
    job = _job(job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.error_message == "rejected at review of the keyframes by test: wrong colour"
    assert _calls(job_id) == ["nano_banana", "nano_banana"]
    # The estimate (two images and a video) was held; only the two images stay reserved.
    assert job.estimated_cost > job.total_cost == Decimal("0.10")
    assert _reserved() == reserved_before - (job.estimated_cost - job.total_cost)
    assert _problems() == []
    with pytest.raises(ReviewConflict, match="reject by test already decided it"):
        review.decide(job_id, "approve", by="someone else")


def test_regenerating_the_end_frame_pays_one_image_and_asks_again(priced: Settings) -> None:
    job_id = _waiting_job("keyframes")
    first = _job(job_id)
    store = factory.blob_store()
    old_end = store.get_bytes(first.image_keys["end"])
    launcher = InlineLauncher()
    review.decide(job_id, "regenerate-end", by="test", note="arms crossed", launcher=launcher)
    job = _job(job_id)
    assert (job.status, job.awaiting, job.review_round) == (
        JobStatus.AWAITING_APPROVAL,
        "keyframes",
        1,
    )
    assert job.image_keys["start"] == first.image_keys["start"]
    assert store.get_bytes(job.image_keys["end"]) != old_end  # another take, same key
    assert job.review["remake"] == {"end": {"variant": 1, "feedback": ["arms crossed"]}}
    assert _calls(job_id) == ["nano_banana"] * 3
    review.decide(job_id, "approve", by="test", launcher=launcher)
    assert _job(job_id).status is JobStatus.COMPLETED
    assert _calls(job_id) == ["nano_banana"] * 3 + ["pika"]


def test_publish_review_keeps_the_live_video_until_approved(priced: Settings) -> None:
    live = submission.submit_job("demo-tee", {}, launcher=InlineLauncher())
    live_key = _job(live.job_id).video_key
    assert live_key and _job(live.job_id).status is JobStatus.COMPLETED

    job_id = _waiting_job("publish")
    job = _job(job_id)
    assert (job.status, job.awaiting, job.review_quote) == (
        JobStatus.AWAITING_APPROVAL,
        "publish",
        Decimal(0),
    )
    assert job.video_key and job.video_key != live_key
    assert job.product.video_key == live_key  # still the old one
    review.decide(job_id, "approve", by="test", launcher=InlineLauncher())
    done = _job(job_id)
    assert done.status is JobStatus.COMPLETED and done.product.video_key == done.video_key
    assert _calls(job_id).count("pika") == 1  # the approved video, not a second one


def test_publish_rejection_deletes_the_unapproved_files(priced: Settings) -> None:
    live = submission.submit_job("demo-tee", {}, launcher=InlineLauncher())
    live_key = _job(live.job_id).video_key
    job_id = _waiting_job("publish")
    made = _job(job_id)
    store = factory.blob_store()
    assert store.head(made.video_key) is not None  # type: ignore[arg-type]
    review.decide(job_id, "reject", by="test")
    job = _job(job_id)
    assert job.status is JobStatus.CANCELLED and job.video_key is None
    assert store.head(made.video_key) is None and store.head(made.poster_key) is None  # type: ignore[arg-type]
    assert job.product.video_key == live_key and store.head(live_key) is not None  # type: ignore[arg-type]
    assert _problems() == []


def test_both_points_ask_twice(priced: Settings) -> None:
    job_id = _waiting_job("both")
    launcher = InlineLauncher()
    review.decide(job_id, "approve", by="test", launcher=launcher)
    assert _job(job_id).awaiting == "publish"
    with pytest.raises(InputError, match="only keyframes can be regenerated"):
        review.decide(job_id, "regenerate-end", by="test")
    review.decide(job_id, "approve", by="test", launcher=launcher)
    assert _job(job_id).status is JobStatus.COMPLETED


def test_the_review_setting_is_the_default_and_a_job_option_overrides_it(
    priced: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings(monkeypatch, REVIEW="keyframes")
    job_id = _waiting_job("keyframes")
    assert _job(job_id).review_mode == "keyframes"
    plain = submission.submit_job("demo-dress", {"review": "none"}, launcher=InlineLauncher())
    assert _job(plain.job_id).status is JobStatus.COMPLETED
    with pytest.raises(ValueError, match="review must be one of"):
        submission.submit_job("demo-dress", {"review": "sometimes"}, launcher=Recorder())


@pytest.mark.both_dbs
def test_two_admins_deciding_at_once_one_wins(priced: Settings) -> None:
    job_id = _waiting_job("keyframes")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(decision: str) -> None:
        barrier.wait()
        try:
            review.decide(job_id, decision, by=decision, launcher=Recorder())
            outcomes.append(f"won:{decision}")
        except ReviewConflict as exc:
            outcomes.append(f"told:{exc}")

    threads = [threading.Thread(target=decide, args=(d,)) for d in ("approve", "reject")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [o for o in outcomes if o.startswith("won:")]
    told = [o for o in outcomes if o.startswith("told:")]
    assert len(won) == 1 and len(told) == 1, outcomes
    winner = won[0].removeprefix("won:")
    assert f"{winner} by {winner} already decided it" in told[0]
    job = _job(job_id)
    assert len(job.review["decisions"]) == 1
    expected = JobStatus.CANCELLED if winner == "reject" else JobStatus.PENDING
    assert job.status is expected


def test_a_review_left_too_long_expires_cancelled_with_its_reservation_released(
    priced: Settings,
) -> None:
    job_id = _waiting_job("keyframes")
    fresh = _waiting_job("keyframes", product="demo-dress")
    with session_scope() as session:
        session.execute(
            update(VideoJob)
            .where(VideoJob.id == job_id)
            .values(awaiting_since=utcnow() - dt.timedelta(hours=73))
        )
    assert review.expire() == [job_id]
    job = _job(job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.error_message == "review expired: nobody decided on the keyframes within 72 h"
    assert _job(fresh).status is JobStatus.AWAITING_APPROVAL
    assert _problems() == []
    with pytest.raises(ReviewConflict):
        review.decide(job_id, "approve", by="late")


def test_cancelling_a_waiting_job_ends_it_at_once(priced: Settings) -> None:
    job_id = _waiting_job("keyframes")
    assert submission.cancel_job(job_id) is JobStatus.CANCELLED
    assert _problems() == []


def test_the_http_api_approves_and_tells_the_second_admin(priced: Settings) -> None:
    from fastapi.testclient import TestClient

    from catwalk.api.app import PREFIX, create_app

    token = "t" * 40
    job_id = _waiting_job("keyframes")
    app = create_app(priced, launcher=InlineLauncher(), token=token)
    with TestClient(app) as anonymous:
        assert anonymous.post(f"{PREFIX}/{job_id}/approve").status_code == 401
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        state = client.get(f"{PREFIX}/{job_id}").json()
        assert state["status"] == "AWAITING_APPROVAL"
        assert state["review"]["waitingFor"] == "keyframes"
        assert state["review"]["approveCost"] == pytest.approx(0.04 * priced.video_duration_seconds)
        assert state["review"]["expiresAt"] > state["review"]["since"]
        assert client.post(f"{PREFIX}/{'0' * 32}/approve").status_code == 404

        answer = client.post(f"{PREFIX}/{job_id}/approve", json={"note": "looks right"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "jobId": job_id,
            "decision": "approve",
            "point": "keyframes",
            "status": "COMPLETED",
        }
        late = client.post(f"{PREFIX}/{job_id}/reject", json={"note": "too late"})
        assert late.status_code == 409
        assert "approve by api already decided it" in late.json()["detail"]
        decisions = client.get(f"{PREFIX}/{job_id}").json()["review"]["decisions"]
        assert [(d["decision"], d["by"], d.get("note")) for d in decisions] == [
            ("approve", "api", "looks right")
        ]


def test_an_approval_whose_run_cannot_start_fails_the_job_instead_of_stranding_it(
    priced: Settings,
) -> None:
    from catwalk.errors import LaunchError

    class Broken:
        def launch(self, **_: Any) -> str | None:
            raise OSError("No space left on device")

    job_id = _waiting_job("keyframes")
    with pytest.raises(LaunchError, match="No space left on device"):
        review.decide(job_id, "approve", by="test", launcher=Broken())
    job = _job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error_message is not None
    assert job.error_message.startswith("submit: could not start the job: ")
    assert job.error_message.endswith("No space left on device")
    assert _problems() == []


def test_a_run_coming_back_to_an_open_review_point_keeps_its_since(priced: Settings) -> None:
    job_id = _waiting_job("keyframes")
    first = _job(job_id)
    # A resumed run's steps before the point set their own status on the way back.
    with session_scope() as session:
        session.execute(
            update(VideoJob)
            .where(VideoJob.id == job_id)
            .values(status=JobStatus.GENERATING_IMAGES, current_step="generating keyframes")
        )
    with session_scope() as session:
        _, opened = jobs.open_review(
            session=session, job_id=job_id, point="keyframes", quote=Decimal(1)
        )
    again = _job(job_id)
    assert not opened
    assert (again.status, again.awaiting_since, again.review_quote) == (
        JobStatus.AWAITING_APPROVAL,
        first.awaiting_since,
        first.review_quote,
    )
    with session_scope() as session:
        waits = [
            e for e in queries.events_for_job(session=session, job_id=job_id) if e.step == "review"
        ]
    assert len(waits) == 1
