"""Contract tests of the HTTP API: every field, type and status code of the original
specification, plus authentication, the OpenAPI document and ``catwalk api``.

The app runs with a launcher that records calls instead of starting flow runs (injected
through ``create_app``); one test follows a job through a real flow run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from catwalk.db import queries, session_scope
from catwalk.db.models import LedgerEntry, VideoJob
from catwalk.db.stats import rebuild_hourly_rollup
from fastapi.testclient import TestClient

from catwalk import config
from catwalk.api import PREFIX, create_app
from catwalk.api.auth import resolve_token
from catwalk.api.server import running_server
from catwalk.catalog import DEMO_PRODUCTS, write_demo_photos
from catwalk.clients import factory
from catwalk.clients.storage import LocalBlobStore
from catwalk.domain import JobStatus, Usage
from catwalk.errors import ConfigError, LimitExceeded
from tests.conftest import reset_settings

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATUSES = {s.value for s in JobStatus}


class RecordingLauncher:
    """Records what would have been started; starts nothing."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], **_: object
    ) -> str | None:
        self.calls.append({"job_id": job_id, "product_id": product_id, "options": options})
        return None


class RefusingLauncher:
    """Stands in for the limit check refusing the submission (see test_limit_refusal)."""

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], **_: object
    ) -> str | None:
        raise LimitExceeded("daily generation limit of 3 reached", retry_after_seconds=3600)


@pytest.fixture
def products(settings: config.Settings) -> list[str]:
    photos = write_demo_photos(settings.catwalk_home / "photos")
    with session_scope(settings) as session:
        for product in DEMO_PRODUCTS:
            queries.upsert_product(
                session=session,
                product_id=product.id,
                name=product.name,
                images=[str(photos[product.id])],
            )
        queries.upsert_product(session=session, product_id="no-photo", name="Bare", images=[])
        text_file = settings.catwalk_home / "photos" / "notes.jpg"
        text_file.write_text("not a photo")
        queries.upsert_product(
            session=session, product_id="text-photo", name="Text", images=[str(text_file)]
        )
    return [p.id for p in DEMO_PRODUCTS]


@pytest.fixture
def launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def client(settings: config.Settings, launcher: RecordingLauncher) -> Iterator[TestClient]:
    app = create_app(settings, launcher=launcher, token=TOKEN)
    with TestClient(app, headers=AUTH) as test_client:
        yield test_client


def _job(settings: config.Settings, job_id: str) -> VideoJob:
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        return job


def test_post_records_a_job_and_answers_202_with_location(
    client: TestClient, launcher: RecordingLauncher, products: list[str], settings: config.Settings
) -> None:
    response = client.post(
        PREFIX,
        json={"productId": "demo-tee", "options": {"modelType": "male", "videoStyle": "dynamic"}},
    )
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"jobId", "status", "estimatedTime"}
    assert isinstance(body["jobId"], str) and body["jobId"]
    assert body["status"] == "PENDING"
    assert isinstance(body["estimatedTime"], int) and body["estimatedTime"] > 0
    assert response.headers["location"] == f"{PREFIX}/{body['jobId']}"
    assert launcher.calls == [
        {
            "job_id": body["jobId"],
            "product_id": "demo-tee",
            "options": {"modelType": "male", "videoStyle": "dynamic"},
        }
    ]
    job = _job(settings, body["jobId"])
    assert (job.product_id, job.status, job.options) == (
        "demo-tee",
        JobStatus.PENDING,
        {"modelType": "male", "videoStyle": "dynamic"},
    )


def test_options_are_optional_and_default(
    client: TestClient, launcher: RecordingLauncher, products: list[str]
) -> None:
    assert client.post(PREFIX, json={"productId": "demo-dress"}).status_code == 202
    assert client.post(PREFIX, json={"productId": "demo-jacket", "options": {}}).status_code == 202
    assert (
        client.post(
            PREFIX, json={"productId": "demo-hoodie", "options": {"videoStyle": "dynamic"}}
        ).status_code
        == 202
    )
    assert [c["options"] for c in launcher.calls] == [
        {"modelType": "female", "videoStyle": "smooth"},
        {"modelType": "female", "videoStyle": "smooth"},
        {"modelType": "female", "videoStyle": "dynamic"},
    ]


@pytest.mark.both_dbs
def test_second_post_for_a_product_in_flight_returns_that_job(
    client: TestClient, launcher: RecordingLauncher, products: list[str], settings: config.Settings
) -> None:
    first = client.post(PREFIX, json={"productId": "demo-tee"})
    again = client.post(PREFIX, json={"productId": "demo-tee", "options": {"modelType": "male"}})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["jobId"] == first.json()["jobId"]
    assert set(again.json()) == {"jobId", "status", "estimatedTime"}
    assert again.headers["location"] == first.headers["location"]
    assert len(launcher.calls) == 1

    # Once the job is over, a new POST starts a new job.
    with session_scope(settings) as session:
        queries.get_job(session=session, job_id=first.json()["jobId"]).status = JobStatus.FAILED
    third = client.post(PREFIX, json={"productId": "demo-tee"})
    assert third.status_code == 202
    assert third.json()["jobId"] != first.json()["jobId"]
    assert len(launcher.calls) == 2


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"productId": "no-such-product"}, "unknown product 'no-such-product'"),
        ({"productId": "no-photo"}, "has no image"),
        ({"productId": "text-photo"}, "notes.jpg is not a readable image"),
        ({"productId": "demo-tee", "options": {"modelType": "robot"}}, "modelType"),
        ({"productId": "demo-tee", "options": {"videoStyle": "jerky"}}, "videoStyle"),
        ({"productId": "demo-tee", "options": {"pose": "start"}}, "options.pose"),
        ({"productId": "demo-tee", "options": "male"}, "options"),
        ({"productId": ""}, "productId"),
        ({"productId": 42}, "productId"),
        ({}, "productId: Field required"),
        ({"productId": "demo-tee", "extra": 1}, "extra"),
        ([], "body"),
    ],
)
def test_bad_requests_are_422_with_a_clear_message(
    client: TestClient,
    launcher: RecordingLauncher,
    products: list[str],
    settings: config.Settings,
    body: Any,
    mentions: str,
) -> None:
    response = client.post(PREFIX, json=body)
    assert response.status_code == 422
    payload = response.json()
    assert set(payload) == {"detail", "errors"}
    assert isinstance(payload["detail"], str) and mentions in payload["detail"]
    assert "\n" not in payload["detail"]
    assert payload["errors"] and all(set(e) == {"loc", "msg", "type"} for e in payload["errors"])
    assert launcher.calls == []
    with session_scope(settings) as session:
        assert queries.list_jobs(session=session) == []


def test_refusals_name_the_field_and_the_reason(client: TestClient, products: list[str]) -> None:
    unknown = client.post(PREFIX, json={"productId": "nope"}).json()["errors"]
    bare = client.post(PREFIX, json={"productId": "no-photo"}).json()["errors"]
    bad_option = client.post(
        PREFIX, json={"productId": "demo-tee", "options": {"modelType": "robot"}}
    ).json()["errors"]
    assert unknown == [
        {"loc": ["body", "productId"], "msg": "unknown product 'nope'", "type": "product_not_found"}
    ]
    assert [(e["loc"], e["type"]) for e in bare] == [(["body", "productId"], "product_image")]
    assert [e["loc"] for e in bad_option] == [["body", "options", "modelType"]]


def test_malformed_json_is_422(client: TestClient, products: list[str]) -> None:
    response = client.post(
        PREFIX, content=b'{"productId": "demo-tee",', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]


def test_daily_limit_is_429_with_retry_after(
    settings: config.Settings,
    launcher: RecordingLauncher,
    products: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limited = reset_settings(monkeypatch, DAILY_GENERATION_LIMIT="2")
    app = create_app(limited, launcher=launcher, token=TOKEN)
    with TestClient(app, headers=AUTH) as client:
        first, second = (client.post(PREFIX, json={"productId": p}) for p in products[:2])
        again = client.post(PREFIX, json={"productId": products[0]})  # in flight: no new job
        refused = client.post(PREFIX, json={"productId": products[2]})
    assert (first.status_code, second.status_code, again.status_code) == (202, 202, 200)
    assert refused.status_code == 429
    body = refused.json()
    assert set(body) == {"detail", "retryAfter"}
    assert "daily limit of 2" in body["detail"]
    assert isinstance(body["retryAfter"], int) and 0 < body["retryAfter"] <= 24 * 3600
    assert refused.headers["retry-after"] == str(body["retryAfter"])
    assert "location" not in refused.headers
    assert len(launcher.calls) == 2


def test_limit_refusal_is_429_with_retry_after(
    settings: config.Settings, products: list[str]
) -> None:
    # Whatever step of the submission refuses on a limit (here a launcher standing in for
    # one), the API translates LimitExceeded the same way.
    app = create_app(settings, launcher=RefusingLauncher(), token=TOKEN)
    with TestClient(app, headers=AUTH) as client:
        response = client.post(PREFIX, json={"productId": "demo-tee"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3600"
    assert response.json() == {"detail": "daily generation limit of 3 reached", "retryAfter": 3600}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", PREFIX), ("GET", f"{PREFIX}/stats"), ("GET", f"{PREFIX}/some-job-id")],
)
@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, None),
        ({"Authorization": "Bearer wrong-token-0123456789"}, "invalid_token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "invalid_token"),
        ({"Authorization": f"Basic {TOKEN}"}, None),
        ({"Authorization": "Bearer "}, None),
        ({"Authorization": TOKEN}, None),
    ],
)
def test_every_endpoint_refuses_without_the_token(
    settings: config.Settings,
    launcher: RecordingLauncher,
    products: list[str],
    method: str,
    path: str,
    headers: dict[str, str],
    error: str | None,
) -> None:
    app = create_app(settings, launcher=launcher, token=TOKEN)
    with TestClient(app) as client:
        response = client.request(method, path, headers=headers, json={"productId": "demo-tee"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is (error is not None)
    assert set(response.json()) == {"detail"}
    assert TOKEN not in response.text
    assert launcher.calls == []


def test_unauthenticated_malformed_body_is_401_not_422(
    settings: config.Settings, launcher: RecordingLauncher
) -> None:
    app = create_app(settings, launcher=launcher, token=TOKEN)
    with TestClient(app) as client:
        response = client.post(
            PREFIX, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        invalid = client.post(PREFIX, json={"productId": 3})
    assert (response.status_code, invalid.status_code) == (401, 401)
    assert "www-authenticate" in response.headers


def test_get_pending_job_has_every_contract_field(client: TestClient, products: list[str]) -> None:
    job_id = client.post(PREFIX, json={"productId": "demo-tee"}).json()["jobId"]
    response = client.get(f"{PREFIX}/{job_id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "jobId",
        "productId",
        "status",
        "progress",
        "currentStep",
        "estimatedTimeRemaining",
        "cost",
    }
    assert body["jobId"] == job_id and body["productId"] == "demo-tee"
    assert body["status"] == "PENDING" and body["status"] in STATUSES
    assert body["progress"] == 0
    assert isinstance(body["currentStep"], str) and body["currentStep"]
    assert isinstance(body["estimatedTimeRemaining"], int) and body["estimatedTimeRemaining"] > 0
    assert body["cost"] == {"nanoBanana": 0.0, "pikaLabs": 0.0, "total": 0.0}


class SigningStore(LocalBlobStore):
    """A local store whose URLs look like presigned ones, to see the API hands out url(key)."""

    def url(self, key: str) -> str:
        return f"https://media.example.com/{key}?X-Amz-Signature=abc&X-Amz-Expires=3600"


def test_get_completed_job_has_result_urls_from_the_blob_store(
    client: TestClient, products: list[str], settings: config.Settings
) -> None:
    job_id = client.post(PREFIX, json={"productId": "demo-dress"}).json()["jobId"]
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        job.status = JobStatus.COMPLETED
        job.progress = 100
        job.current_step = "done"
        job.video_key = "videos/demo-dress/v.mp4"
        job.poster_key = "videos/demo-dress/p.jpg"
        job.video_duration_seconds = 5.0
        for service, amount in (("nano_banana", "0.078"), ("pika", "0.2")):
            usage = Usage(
                service=service,
                provider="test",
                operation="op",
                model="m",
                units=Decimal(1),
                unit="call",
            )
            queries.record_usage(
                session=session,
                job_id=job_id,
                usage=usage,
                unit_price=Decimal(amount),
                amount=Decimal(amount),
                price_date=None,
            )
    with factory.override(storage=SigningStore(settings.media_dir)):
        body = client.get(f"{PREFIX}/{job_id}").json()
    assert body["status"] == "COMPLETED"
    assert body["progress"] == 100
    assert body["estimatedTimeRemaining"] == 0
    assert body["result"] == {
        "videoUrl": "https://media.example.com/videos/demo-dress/v.mp4?X-Amz-Signature=abc&X-Amz-Expires=3600",
        "thumbnailUrl": "https://media.example.com/videos/demo-dress/p.jpg?X-Amz-Signature=abc&X-Amz-Expires=3600",
        "duration": 5.0,
    }
    assert body["cost"] == {"nanoBanana": 0.078, "pikaLabs": 0.2, "total": pytest.approx(0.278)}
    assert "error" not in body


def test_get_failed_job_has_error_and_no_time_left(
    client: TestClient, products: list[str], settings: config.Settings
) -> None:
    job_id = client.post(PREFIX, json={"productId": "demo-tee"}).json()["jobId"]
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        job.status = JobStatus.FAILED
        job.progress = 45
        job.error_message = "pika refused the keyframes: content policy"
    body = client.get(f"{PREFIX}/{job_id}").json()
    assert body["status"] == "FAILED"
    assert body["error"] == "pika refused the keyframes: content policy"
    assert body["estimatedTimeRemaining"] is None
    assert "result" not in body


def test_unknown_job_is_404(client: TestClient) -> None:
    response = client.get(f"{PREFIX}/0123456789abcdef")
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown job '0123456789abcdef'"}


def test_stats_of_an_empty_database(client: TestClient) -> None:
    response = client.get(f"{PREFIX}/stats")
    assert response.status_code == 200
    assert response.json() == {
        "totalJobs": 0,
        "completedJobs": 0,
        "failedJobs": 0,
        "totalCost": 0.0,
        "costByService": {"nanoBanana": 0.0, "pikaLabs": 0.0},
        "costByDate": [],
    }


@pytest.mark.both_dbs
def test_stats_count_jobs_and_sum_the_ledger_by_service_and_day(
    client: TestClient, products: list[str], settings: config.Settings
) -> None:
    ids = [client.post(PREFIX, json={"productId": p}).json()["jobId"] for p in products]
    day1 = dt.datetime(2026, 11, 24, 23, 30, tzinfo=dt.UTC)
    # 00:30 in Paris on the 25th is still the 24th in UTC (LIMITS_TIMEZONE's default).
    day1_late = dt.datetime(2026, 11, 25, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    day2 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    with session_scope(settings) as session:
        for job_id, status in zip(
            ids, [JobStatus.COMPLETED, JobStatus.COMPLETED, JobStatus.FAILED], strict=False
        ):
            queries.get_job(session=session, job_id=job_id).status = status
        rows = [
            (ids[0], "nano_banana", "0.039", day1),
            (ids[0], "nano_banana", "0.039", day1_late),
            (ids[0], "pika", "0.200", day2),
            (ids[2], "nano_banana", "0.039", day2),
            (None, "pika", "0.100", day2),  # a job since deleted still cost money
        ]
        for job_id, service, amount, at in rows:
            session.add(
                LedgerEntry(
                    job_id=job_id,
                    service=service,
                    provider="test",
                    operation="op",
                    model="m",
                    unit="call",
                    units=Decimal(1),
                    unit_price=Decimal(amount),
                    amount=Decimal(amount),
                    created_at=at,
                )
            )
        session.flush()
        # Rows written behind record_usage's back: bring the hourly rollup stats read up to date.
        rebuild_hourly_rollup(session=session)
    body = client.get(f"{PREFIX}/stats").json()
    assert body["totalJobs"] == 4
    assert body["completedJobs"] == 2
    assert body["failedJobs"] == 1
    assert body["totalCost"] == pytest.approx(0.417)
    assert body["costByService"] == {
        "nanoBanana": pytest.approx(0.117),
        "pikaLabs": pytest.approx(0.3),
    }
    assert body["costByDate"] == [
        {"date": "2026-11-24", "cost": pytest.approx(0.078)},
        {"date": "2026-11-25", "cost": pytest.approx(0.339)},
    ]
    assert set(body) == {
        "totalJobs",
        "completedJobs",
        "failedJobs",
        "totalCost",
        "costByService",
        "costByDate",
    }
    assert all(isinstance(v, int) for k, v in body.items() if k.endswith("Jobs"))


def test_openapi_document_is_public_and_exact(client: TestClient) -> None:
    anonymous = TestClient(client.app)  # the document describes, it does not act: public
    response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    paths = doc["paths"]
    assert set(paths) == {
        PREFIX,
        f"{PREFIX}/stats",
        f"{PREFIX}/{{jobId}}",
        f"{PREFIX}/{{jobId}}/retry",
        f"{PREFIX}/{{jobId}}/cancel",
        f"{PREFIX}/{{jobId}}/approve",
        f"{PREFIX}/{{jobId}}/reject",
        "/media/{key}",
    }
    assert set(paths[PREFIX]) == {"get", "post"}  # the paged list shares the path
    schemas = doc["components"]["schemas"]

    def props(name: str) -> set[str]:
        return set(schemas[name]["properties"])

    assert props("GenerationRequest") == {"productId", "options"}
    assert props("GenerationOptions") == {"modelType", "videoStyle", "review"}
    assert schemas["GenerationOptions"]["properties"]["modelType"]["enum"] == ["female", "male"]
    assert schemas["GenerationOptions"]["properties"]["videoStyle"]["enum"] == ["smooth", "dynamic"]
    assert props("SubmittedJob") == {"jobId", "status", "estimatedTime"}
    assert props("JobState") >= {
        "jobId",
        "status",
        "progress",
        "currentStep",
        "estimatedTimeRemaining",
        "result",
        "error",
        "cost",
    }
    job_state = schemas["JobState"]
    # Optional keys are absent, never null; estimatedTimeRemaining is always there (or null).
    assert set(job_state["required"]) == {
        "jobId",
        "productId",
        "status",
        "progress",
        "currentStep",
        "estimatedTimeRemaining",
    }
    for key in ("result", "error", "cost", "review"):
        assert "anyOf" not in job_state["properties"][key]
    assert "AWAITING_APPROVAL" in schemas["JobStatus"]["enum"]
    assert props("JobReview") == {
        "mode",
        "waitingFor",
        "since",
        "expiresAt",
        "approveCost",
        "decisions",
    }
    assert props("JobResult") == {"videoUrl", "thumbnailUrl", "duration"}
    assert props("JobCost") == {"nanoBanana", "pikaLabs", "total"}
    assert props("GenerationStats") == {
        "totalJobs",
        "completedJobs",
        "failedJobs",
        "totalCost",
        "costByService",
        "costByDate",
    }
    assert props("CostByService") == {"nanoBanana", "pikaLabs"}
    assert props("DailyCost") == {"date", "cost"}
    post = paths[PREFIX]["post"]
    assert set(post["responses"]) == {"200", "202", "401", "422", "429", "503"}
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "CATWALK_API_TOKEN",
    }
    for name, path in paths.items():
        if name == "/media/{key}":
            # Media URLs are fetched by other systems without the token (signed when
            # SIGNED_URLS is on), like objects in a bucket.
            assert "security" not in path["get"] and "403" in path["get"]["responses"]
            continue
        for operation in path.values():
            assert operation["security"] == [{"HTTPBearer": []}]
            assert "401" in operation["responses"]
    assert "Swagger UI" in anonymous.get("/docs").text


def test_over_a_real_socket(
    settings: config.Settings, launcher: RecordingLauncher, products: list[str]
) -> None:
    app = create_app(settings, launcher=launcher, token=TOKEN)
    with running_server(app) as base_url, httpx.Client(base_url=base_url, headers=AUTH) as http:
        posted = http.post(PREFIX, json={"productId": "demo-hoodie"})
        assert posted.status_code == 202
        followed = http.get(posted.headers["location"])
        assert followed.status_code == 200
        assert followed.json()["jobId"] == posted.json()["jobId"]
        assert http.get(f"{PREFIX}/stats").json()["totalJobs"] == 1
        assert httpx.get(f"{base_url}{PREFIX}/stats").status_code == 401


@pytest.mark.both_dbs
def test_concurrent_posts_for_one_product_make_one_job(
    settings: config.Settings, launcher: RecordingLauncher, products: list[str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(settings, launcher=launcher, token=TOKEN)
    with (
        running_server(app) as base_url,
        httpx.Client(base_url=base_url, headers=AUTH) as http,
        ThreadPoolExecutor(max_workers=12) as pool,
    ):
        responses = list(
            pool.map(lambda _: http.post(PREFIX, json={"productId": "demo-tee"}), range(12))
        )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 11 + [202]
    assert len({r.json()["jobId"] for r in responses}) == 1
    assert len(launcher.calls) == 1


@pytest.mark.slow
def test_a_job_followed_from_post_to_completed(
    client: TestClient,
    launcher: RecordingLauncher,
    products: list[str],
    settings: config.Settings,
    prefect_server: None,
) -> None:
    from catwalk.flows.generate_product_video import generate_product_video

    job_id = client.post(PREFIX, json={"productId": "demo-jacket"}).json()["jobId"]
    (call,) = launcher.calls
    # What the launcher would have started, run here in-process.
    state = generate_product_video(
        call["product_id"], call["options"], call["job_id"], return_state=True
    )
    assert state.is_completed()
    body = client.get(f"{PREFIX}/{job_id}").json()
    assert body["status"] == "COMPLETED" and body["progress"] == 100
    # Local storage: the API serves the files itself (a file:// URL is no use elsewhere).
    video = client.get(body["result"]["videoUrl"])
    poster = client.get(body["result"]["thumbnailUrl"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert len(video.content) > 0 and poster.status_code == 200
    assert body["result"]["duration"] == pytest.approx(2, abs=0.2)
    with session_scope(settings) as session:
        ledger = queries.ledger_for_job(session=session, job_id=job_id)
        assert body["cost"]["total"] == pytest.approx(float(sum(e.amount for e in ledger)))
    stats = client.get(f"{PREFIX}/stats").json()
    assert (stats["totalJobs"], stats["completedJobs"]) == (1, 1)
    assert stats["totalCost"] == pytest.approx(body["cost"]["total"])


def test_create_app_refuses_to_run_without_a_token(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="CATWALK_API_TOKEN is not set"):
        create_app(settings)
    # Embedded mode may make a one-off token (catwalk api prints it); a deployment may not.
    token, generated = resolve_token(config.Settings(DATABASE_URL=None), allow_generated=True)
    assert generated and len(token) >= 32
    with pytest.raises(ConfigError, match="not set"):
        resolve_token(config.Settings(DATABASE_URL="postgresql://db/x"), allow_generated=True)
    with pytest.raises(ConfigError, match="too short"):
        resolve_token(config.Settings(CATWALK_API_TOKEN="short"))
    assert resolve_token(config.Settings(CATWALK_API_TOKEN=TOKEN)) == (TOKEN, False)


def _catwalk(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "catwalk.cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _serving(proc: subprocess.Popen[str], workers: int) -> tuple[str, list[str]]:
    """The base URL once every worker has started, and the lines printed until then."""
    assert proc.stdout is not None
    lines: list[str] = []
    base, started = None, 0
    for line in proc.stdout:
        lines.append(line.strip())
        found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line, re.IGNORECASE)
        if found:
            base = f"http://127.0.0.1:{found.group(1)}"
        started += "Application startup complete" in line
        if base and started == workers:
            return base, lines
    pytest.fail("catwalk api exited without serving: " + " | ".join(lines))


def test_catwalk_api_command_serves_and_refuses_without_token(
    settings: config.Settings, products: list[str]
) -> None:
    env = {"CATWALK_HOME": str(settings.catwalk_home), "CATWALK_API_TOKEN": TOKEN}
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    # Two workers (what `catwalk api` runs on a 2-CPU machine) on one socket.
    proc = _catwalk("api", "--port", "0", "--workers", "2", env=env)
    try:
        base, _ = _serving(proc, workers=2)
        for _ in range(4):  # a new connection each time: either worker may take it
            assert httpx.get(f"{base}{PREFIX}/stats").status_code == 401
            stats = httpx.get(f"{base}{PREFIX}/stats", headers=AUTH)
            assert stats.status_code == 200 and stats.json()["totalJobs"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    if settings.database_url:  # outside embedded mode a missing token is a refusal
        refused = _catwalk("api", "--port", "0", env={**env, "CATWALK_API_TOKEN": ""})
        out, _ = refused.communicate(timeout=60)
        assert refused.returncode == 1
        assert out.strip().startswith("error: CATWALK_API_TOKEN is not set")
        assert "Traceback" not in out
        return

    # Embedded mode without a token: a one-off token is printed once, and each worker takes it.
    proc = _catwalk("api", "--port", "0", "--workers", "2", env={**env, "CATWALK_API_TOKEN": ""})
    try:
        base, lines = _serving(proc, workers=2)
        token = lines[lines.index("CATWALK_API_TOKEN is not set; this run accepts the token:") + 1]
        for _ in range(4):
            ok = httpx.get(f"{base}{PREFIX}/stats", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200
            assert httpx.get(f"{base}{PREFIX}/stats", headers=AUTH).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
