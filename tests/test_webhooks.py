"""Completion webhooks against a real local HTTP receiver (pytest-httpserver): one signed
``job.completed`` per job ending, verified the way a receiver would, sent again after a 500,
recorded like the alerts, never sent twice for the same ending."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from catwalk.db import queries, session_scope
from catwalk.db.base import utcnow
from catwalk.db.models import VideoJob, WebhookDelivery
from catwalk.tasks.webhooks import deliver_pending_webhooks, notify_job_ended
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from catwalk import config
from catwalk.catalog import write_demo_photos
from catwalk.clients.webhooks import SIGNATURE_HEADER, signature, verify_signature
from catwalk.domain import JobOptions, JobStatus
from tests.conftest import reset_settings

SECRET = "whsec-test-0123456789abcdef"


def _ended_job(
    settings: config.Settings, tmp_path: Path, job_id: str, job_status: JobStatus
) -> str:
    photos = write_demo_photos(tmp_path / "photos")
    with session_scope(settings) as session:
        queries.upsert_product(
            session=session, product_id="tee", name="Tee", images=[str(photos["demo-tee"])]
        )
        session.add(
            VideoJob(
                id=job_id,
                product_id="tee",
                options=JobOptions.from_mapping({}).to_dict(),
                status=job_status,
                video_key="videos/tee/v.mp4" if job_status is JobStatus.COMPLETED else None,
                error_message=None if job_status is JobStatus.COMPLETED else "video: refused",
                completed_at=utcnow(),
            )
        )
    return job_id


@pytest.fixture
def hook(
    settings: config.Settings, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> config.Settings:
    return reset_settings(
        monkeypatch,
        WEBHOOK_URL=httpserver.url_for("/hooks/catwalk?key=url-credential"),
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_ATTEMPTS="3",
    )


def test_one_signed_completed_event_per_job_sent_again_after_a_500(
    hook: config.Settings, httpserver: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="catwalk")
    httpserver.expect_ordered_request("/hooks/catwalk", method="POST").respond_with_data("", 500)
    httpserver.expect_ordered_request("/hooks/catwalk", method="POST").respond_with_data("", 204)
    job_id = _ended_job(hook, tmp_path, "a" * 32, JobStatus.COMPLETED)

    assert notify_job_ended(job_id, settings=hook) is True
    assert notify_job_ended(job_id, settings=hook) is False  # same ending: never sent twice
    httpserver.check_assertions()
    requests = [request for request, _ in httpserver.log]
    assert len(requests) == 2  # the 500, then the retry
    first, second = requests
    assert first.get_data() == second.get_data()
    assert first.headers["X-Catwalk-Event-Id"] == second.headers["X-Catwalk-Event-Id"]
    for request in requests:
        body = request.get_data()
        assert verify_signature(SECRET, request.headers[SIGNATURE_HEADER], body)
        assert not verify_signature("another-secret", request.headers[SIGNATURE_HEADER], body)
        assert not verify_signature(SECRET, request.headers[SIGNATURE_HEADER], body + b" ")
    event = json.loads(second.get_data())
    assert event["type"] == "job.completed"
    assert event["data"]["jobId"] == job_id and event["data"]["status"] == "COMPLETED"
    assert event["id"] == second.headers["X-Catwalk-Event-Id"]

    with session_scope(hook) as session:
        (row,) = session.scalars(select(WebhookDelivery)).all()
        assert row.delivered_at is not None and row.delivery_attempts == 2
        assert row.delivery_error is None
    # The URL (it may hold a credential) never reaches a log line.
    # (the receiver's own access log, werkzeug's, is the only one allowed to show it).
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("catwalk")]
    assert ours and not any("url-credential" in m for m in ours)


def test_replayed_or_stale_signatures_are_refused() -> None:
    body = b'{"id":"x"}'
    now = int(time.time())
    fresh = signature(SECRET, body, timestamp=now)
    assert verify_signature(SECRET, fresh, body, now=now + 10)
    assert not verify_signature(SECRET, fresh, body, now=now + 301)  # a replay, later
    forged = fresh.replace(f"t={now}", f"t={now + 400}")  # moving the time breaks the MAC
    assert not verify_signature(SECRET, forged, body, now=now + 400)
    assert not verify_signature(SECRET, "garbage", body)


def test_failed_job_event_recorded_and_retried_later(
    hook: config.Settings, httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 503)
    job_id = _ended_job(hook, tmp_path, "b" * 32, JobStatus.FAILED)
    assert notify_job_ended(job_id, settings=hook) is False
    assert len(httpserver.log) == 3  # WEBHOOK_ATTEMPTS, with backoff between them
    with session_scope(hook) as session:
        (row,) = session.scalars(select(WebhookDelivery)).all()
        assert row.event == "job.failed" and row.delivered_at is None
        assert row.delivery_attempts == 3 and row.delivery_error == "webhook answered HTTP 503"

    httpserver.clear()
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 200)
    assert deliver_pending_webhooks(settings=hook) == 1
    event = json.loads(httpserver.log[0][0].get_data())
    assert event["type"] == "job.failed" and event["data"]["error"] == "video: refused"
    assert deliver_pending_webhooks(settings=hook) == 0


def test_housekeeping_redelivers_what_is_still_pending(
    hook: config.Settings, httpserver: HTTPServer, tmp_path: Path
) -> None:
    from catwalk.flows.housekeeping import housekeeping  # the flow wires the task in
    from catwalk.tasks.report import redeliver_webhooks

    assert housekeeping.name == "housekeeping"
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 500)
    job_id = _ended_job(hook, tmp_path, "c" * 32, JobStatus.COMPLETED)
    assert notify_job_ended(job_id, settings=hook) is False
    httpserver.clear()
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 200)
    assert redeliver_webhooks.fn() == {"delivered": 1}
    assert redeliver_webhooks.fn() == {"delivered": 0}
