"""Completion webhooks against a real local HTTP receiver (pytest-httpserver).

Every ending sends one signed event, whoever ends the job: the flow (``job.completed``, with
a media URL the receiver fetches over HTTP with a Range), housekeeping failing a job whose
run failed, a launch that failed (``job.failed``), an admin's cancel (``job.cancelled``).
Verified the way a receiver would, sent again after a 500, recorded like the alerts, never
sent twice for one ending, and never carrying a path on the server's disk.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from catwalk.db import queries, session_scope
from catwalk.db.models import VideoJob, WebhookDelivery
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from catwalk import config, lifecycle, submission
from catwalk.api import create_app
from catwalk.api.server import running_server
from catwalk.catalog import write_demo_photos
from catwalk.clients.webhooks import SIGNATURE_HEADER, signature, verify_signature
from catwalk.domain import JobStatus
from catwalk.errors import LaunchError
from catwalk.webhooks import deliver_pending_webhooks
from tests.conftest import reset_settings

SECRET = "whsec-test-0123456789abcdef"
TOKEN = "test-token-0123456789abcdef"


class _NoLaunch:
    def launch(self, **_: Any) -> str | None:
        return None


class _LaunchRefused:
    def launch(self, **_: Any) -> str | None:
        raise ConnectionError("Prefect API unreachable")


def _product(settings: config.Settings, product_id: str = "tee") -> str:
    photos = write_demo_photos(settings.catwalk_home / "photos")
    with session_scope(settings) as session:
        queries.upsert_product(
            session=session, product_id=product_id, name="Tee", images=[str(photos["demo-tee"])]
        )
    return product_id


def _in_flight(settings: config.Settings, product_id: str, *, video: bool = False) -> str:
    """A submitted job that got as far as rendering (with its files stored, if ``video``)."""
    job_id = submission.submit_job(product_id, None, settings=settings, launcher=_NoLaunch()).job_id
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        job.status = JobStatus.GENERATING_VIDEO
        if video:
            job.video_key = f"videos/{product_id}/{job_id}/video.mp4"
            job.poster_key = f"videos/{product_id}/{job_id}/poster.jpg"
    return job_id


def _events(httpserver: HTTPServer) -> list[dict[str, Any]]:
    events = []
    for request, _ in httpserver.log:
        body = request.get_data()
        assert verify_signature(SECRET, request.headers[SIGNATURE_HEADER], body)
        events.append(json.loads(body))
    return events


def _rows(settings: config.Settings) -> list[WebhookDelivery]:
    with session_scope(settings) as session:
        rows = list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))
        session.expunge_all()
    return rows


@pytest.fixture
def hook(
    settings: config.Settings, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> config.Settings:
    return reset_settings(
        monkeypatch,
        WEBHOOK_URL=httpserver.url_for("/hooks/catwalk?key=url-credential"),
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_ATTEMPTS="3",
        RETRY_DELAY_SECONDS="0",
    )


def test_one_signed_completed_event_per_job_sent_again_after_a_500(
    hook: config.Settings, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="catwalk")
    httpserver.expect_ordered_request("/hooks/catwalk", method="POST").respond_with_data("", 500)
    httpserver.expect_ordered_request("/hooks/catwalk", method="POST").respond_with_data("", 204)
    job_id = _in_flight(hook, _product(hook), video=True)

    assert lifecycle.end_job(job_id, JobStatus.COMPLETED, settings=hook) is not None
    # The same ending, tried again by another path: neither ended nor sent twice.
    assert lifecycle.end_job(job_id, JobStatus.COMPLETED, settings=hook) is None
    assert deliver_pending_webhooks(settings=hook) == 0
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
    # Local storage and no API_PUBLIC_URL: no URL to give, the key, and never a server path.
    assert event["data"]["videoUrl"] is None and event["data"]["thumbnailUrl"] is None
    assert event["data"]["videoKey"] == f"videos/tee/{job_id}/video.mp4"
    assert "file:" not in second.get_data().decode()
    assert str(hook.catwalk_home) not in second.get_data().decode()

    (row,) = _rows(hook)
    assert row.delivered_at is not None and row.delivery_attempts == 2
    assert row.delivery_error is None and row.payload.encode() == second.get_data()
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
    hook: config.Settings, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 503)
    job_id = _in_flight(hook, _product(hook))
    lifecycle.end_job(job_id, JobStatus.FAILED, "refused", settings=hook)
    assert len(httpserver.log) == 3  # WEBHOOK_ATTEMPTS, with backoff between them
    (row,) = _rows(hook)
    assert row.event == "job.failed" and row.delivered_at is None
    assert row.delivery_attempts == 3 and row.delivery_error == "webhook answered HTTP 503"

    httpserver.clear()
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 200)
    assert deliver_pending_webhooks(settings=hook) == 1
    (event,) = _events(httpserver)
    assert event["type"] == "job.failed" and event["data"]["error"] == "rendering video: refused"
    assert event["data"]["videoUrl"] is None and event["data"]["videoKey"] is None
    assert deliver_pending_webhooks(settings=hook) == 0


def test_no_event_is_recorded_without_a_secret(
    settings: config.Settings, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsigned = reset_settings(monkeypatch, WEBHOOK_URL=httpserver.url_for("/hooks/catwalk"))
    job_id = _in_flight(unsigned, _product(unsigned))
    lifecycle.end_job(job_id, JobStatus.FAILED, "boom", settings=unsigned)
    assert httpserver.log == [] and _rows(unsigned) == []


def test_cancel_and_a_failed_launch_send_their_events_at_once(
    hook: config.Settings, httpserver: HTTPServer
) -> None:
    """Endings outside the flow: an admin's cancel is ``job.cancelled`` (not a failure: the
    shop asked for it), a launch that never reached Prefect is ``job.failed``."""
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 204)
    cancelled = submission.submit_job(
        _product(hook, "a"), None, settings=hook, launcher=_NoLaunch()
    ).job_id
    assert submission.cancel_job(cancelled, settings=hook) is JobStatus.CANCELLED
    assert submission.cancel_job(cancelled, settings=hook) is JobStatus.CANCELLED  # no repeat
    with pytest.raises(LaunchError):
        submission.submit_job(_product(hook, "b"), None, settings=hook, launcher=_LaunchRefused())

    events = _events(httpserver)
    assert [(e["type"], e["data"]["status"]) for e in events] == [
        ("job.cancelled", "CANCELLED"),
        ("job.failed", "FAILED"),
    ]
    assert events[0]["data"]["jobId"] == cancelled
    assert events[0]["data"]["error"] == "cancelled by an admin"
    assert events[1]["data"]["error"].startswith("submit: could not start the job")
    assert all(r.delivered_at is not None for r in _rows(hook))


def test_a_front_door_sends_once_and_leaves_the_rest_to_housekeeping(
    hook: config.Settings, httpserver: HTTPServer
) -> None:
    # An admin's cancel must not wait out the backoff of a receiver that is down.
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 500)
    job_id = submission.submit_job(_product(hook), None, settings=hook, launcher=_NoLaunch()).job_id
    submission.cancel_job(job_id, settings=hook)
    assert len(httpserver.log) == 1
    httpserver.clear()
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 200)
    assert deliver_pending_webhooks(settings=hook) == 1
    assert [e["type"] for e in _events(httpserver)] == ["job.cancelled"]


def test_housekeeping_fails_a_job_whose_run_failed_and_the_receiver_hears_it(
    hook: config.Settings, httpserver: HTTPServer, prefect_server: None
) -> None:
    from catwalk.flows.housekeeping import housekeeping  # the flow wires both tasks in
    from catwalk.tasks.housekeeping import reconcile_jobs
    from catwalk.tasks.report import redeliver_webhooks
    from prefect import flow, get_client
    from prefect.states import Failed

    assert housekeeping.name == "housekeeping"

    @flow(name="stand-in")
    def stand_in() -> None:
        """Only used to create a run in the test server."""

    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 500)
    job_id = _in_flight(hook, _product(hook))
    with get_client(sync_client=True) as client:
        run_id = str(client.create_flow_run(stand_in, state=Failed(message="worker lost")).id)
    with session_scope(hook) as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        job.flow_run_id = run_id

    report = reconcile_jobs(grace_seconds=0, launcher=_NoLaunch())
    assert report["failed"] == [job_id]
    assert len(httpserver.log) == 3  # housekeeping is no front door: every attempt now
    # The receiver comes back; the next housekeeping round delivers the same event.
    httpserver.clear()
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 200)
    assert redeliver_webhooks.fn() == {"delivered": 1}
    assert redeliver_webhooks.fn() == {"delivered": 0}
    (event,) = _events(httpserver)
    assert event["type"] == "job.failed" and event["data"]["jobId"] == job_id
    assert event["data"]["error"] == "run: worker lost"


@pytest.mark.parametrize("signed", [False, True], ids=["public", "signed"])
def test_a_flow_run_sends_one_completed_event_whose_video_the_receiver_fetches(
    hook: config.Settings,
    httpserver: HTTPServer,
    prefect_server: None,
    monkeypatch: pytest.MonkeyPatch,
    signed: bool,
) -> None:
    """Local storage: the event's URL is the API's /media URL at API_PUBLIC_URL (signed and
    expiring with SIGNED_URLS), which a system with no token fetches with a Range."""
    from catwalk.flows.generate_product_video import generate_product_video

    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 204)
    extra = {"SIGNED_URLS": "true", "CATWALK_API_TOKEN": TOKEN} if signed else {}
    api_settings = reset_settings(monkeypatch, OFFLINE_FRAME_WIDTH="96", **extra)
    product_id = _product(api_settings)
    app = create_app(api_settings, launcher=_NoLaunch(), token=TOKEN)  # type: ignore[arg-type]
    with running_server(app) as base_url:
        current = reset_settings(monkeypatch, API_PUBLIC_URL=base_url + "/")
        job_id = submission.submit_job(
            product_id, None, settings=current, launcher=_NoLaunch()
        ).job_id
        generate_product_video(product_id, None, job_id, return_state=True)

        (event,) = _events(httpserver)
        assert event["type"] == "job.completed" and event["data"]["jobId"] == job_id
        url = event["data"]["videoUrl"]
        assert url.startswith(f"{base_url}/media/products/{product_id}-"), url
        assert ("sig=" in url and "expires=" in url) is signed
        assert TOKEN not in url
        part = httpx.get(url, headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and len(part.content) == 100
        assert part.content[4:8] == b"ftyp"  # an MP4's first box
        poster = httpx.get(event["data"]["thumbnailUrl"])
        assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"
        if signed:
            assert httpx.get(url.split("?")[0]).status_code == 403
        # The API's own answer for the job points at the same address.
        answer = httpx.get(
            f"{base_url}/api/admin/video-generation/{job_id}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()
        assert answer["result"]["videoUrl"].split("?")[0] == url.split("?")[0]
    with session_scope(current) as session:
        job = session.get(VideoJob, job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
    assert len(_rows(current)) == 1


def test_a_retried_job_reports_its_second_ending_too(
    hook: config.Settings, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 204)
    job_id = _in_flight(hook, _product(hook))
    lifecycle.end_job(job_id, JobStatus.FAILED, "boom", settings=hook)
    submission.retry_job(job_id, settings=hook, launcher=_NoLaunch())
    lifecycle.end_job(job_id, JobStatus.FAILED, "boom again", settings=hook)
    events = _events(httpserver)
    assert [e["data"]["error"] for e in events] == ["rendering video: boom", "starting: boom again"]
    assert len({e["id"] for e in events}) == 2


def test_api_public_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="API_PUBLIC_URL must start with http"):
        config.Settings(API_PUBLIC_URL="catwalk.example")
    assert (
        config.Settings(API_PUBLIC_URL="https://c.example/").api_public_url == "https://c.example"
    )


def test_a_failure_naming_a_server_file_sends_only_its_name(
    hook: config.Settings, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/hooks/catwalk", method="POST").respond_with_data("", 204)
    job_id = _in_flight(hook, _product(hook))
    where = hook.catwalk_home / "media" / "photos" / "tee.png"
    lifecycle.end_job(job_id, JobStatus.FAILED, f"image file not found: {where}", settings=hook)
    (event,) = _events(httpserver)
    assert event["data"]["error"] == "rendering video: image file not found: tee.png"
    assert str(hook.catwalk_home) not in json.dumps(event)
