"""The API for other systems: media URLs they can fetch (HTTP Range, signed when asked), the
paged job list, retry and cancel. Served by uvicorn on a real port and fetched with httpx."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from catwalk.db import queries, session_scope
from catwalk.db.models import VideoJob

from catwalk import config
from catwalk.api import PREFIX, create_app
from catwalk.api.media import media_url
from catwalk.api.server import running_server
from catwalk.catalog import write_demo_photos
from catwalk.domain import JobOptions, JobStatus
from tests.conftest import reset_settings

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VIDEO = bytes(range(256)) * 40  # 10 240 bytes, every offset distinguishable


class Launches:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def launch(self, **kwargs: Any) -> str | None:
        self.calls.append(kwargs)
        return None


def _seed(settings: config.Settings, tmp_path: Path) -> None:
    photos = write_demo_photos(tmp_path / "photos")
    with session_scope(settings) as session:
        for pid in ("tee", "dress"):
            queries.upsert_product(
                session=session, product_id=pid, name=pid, images=[str(photos["demo-tee"])]
            )


def _job(
    settings: config.Settings,
    job_id: str,
    product_id: str,
    job_status: JobStatus,
    *,
    minutes_ago: int = 0,
) -> str:
    created = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC) - dt.timedelta(minutes=minutes_ago)
    values: dict[str, Any] = {}
    if job_status is JobStatus.COMPLETED:
        key = f"videos/{product_id}/{job_id}/video.mp4"
        path = settings.media_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(VIDEO)
        values = {"video_key": key, "progress": 100, "current_step": "done"}
    with session_scope(settings) as session:
        session.add(
            VideoJob(
                id=job_id,
                product_id=product_id,
                options=JobOptions.from_mapping({}).to_dict(),
                status=job_status,
                created_at=created,
                **values,
            )
        )
    return job_id


@pytest.fixture
def api(settings: config.Settings, tmp_path: Path) -> Iterator[tuple[httpx.Client, Launches]]:
    _seed(settings, tmp_path)
    launches = Launches()
    app = create_app(settings, launcher=launches, token=TOKEN)  # type: ignore[arg-type]
    with running_server(app) as base_url, httpx.Client(base_url=base_url, headers=AUTH) as http:
        yield http, launches


def test_a_completed_jobs_video_is_fetched_over_http_with_a_range(
    settings: config.Settings, api: tuple[httpx.Client, Launches]
) -> None:
    http, _ = api
    _job(settings, "a" * 32, "tee", JobStatus.COMPLETED)
    body = http.get(f"{PREFIX}/{'a' * 32}").json()
    url = body["result"]["videoUrl"]
    assert url.startswith(str(http.base_url).rstrip("/") + "/media/"), url
    # Another system has no token for the API: the media URL alone must do.
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == VIDEO
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = httpx.get(url, headers={"Range": "bytes=1000-1099"})
    assert part.status_code == 206
    assert part.content == VIDEO[1000:1100]
    assert part.headers["content-range"] == f"bytes 1000-1099/{len(VIDEO)}"
    # Nothing outside the media folder, however the key is spelled.
    base = str(http.base_url).rstrip("/")
    for sneaky in ("/media/../catwalk.db", "/media/%2e%2e/catwalk.db", "/media/nope.mp4"):
        assert httpx.get(base + sneaky).status_code == 404, sneaky


def test_signed_media_urls_expire_and_refuse_tampering(
    settings: config.Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = reset_settings(monkeypatch, SIGNED_URLS="true", SIGNED_URL_TTL_SECONDS="60")
    _seed(settings, tmp_path)
    _job(settings, "b" * 32, "tee", JobStatus.COMPLETED)
    app = create_app(settings, launcher=Launches(), token=TOKEN)  # type: ignore[arg-type]
    with running_server(app) as base_url:
        body = httpx.get(f"{base_url}{PREFIX}/{'b' * 32}", headers=AUTH).json()
        url = body["result"]["videoUrl"]
        assert "expires=" in url and "sig=" in url and TOKEN not in url
        assert httpx.get(url, headers={"Range": "bytes=0-9"}).content == VIDEO[:10]
        plain = url.split("?")[0]
        assert httpx.get(plain).status_code == 403
        assert httpx.get(url[:-1] + ("0" if url[-1] != "0" else "1")).status_code == 403
        key = urlsplit(plain).path.removeprefix("/media/")
        stale = media_url(base_url, key, settings=settings, api_token=TOKEN, now=0)
        assert httpx.get(stale).status_code == 403
        # The expiry is signed too: moving it forward breaks the signature.
        forged = url.replace("expires=", "expires=9")
        assert httpx.get(forged).status_code == 403


def test_list_filters_and_pages_newest_first(
    settings: config.Settings, api: tuple[httpx.Client, Launches]
) -> None:
    http, _ = api
    ids = [_job(settings, f"{i:032x}", "tee", JobStatus.FAILED, minutes_ago=i) for i in range(5)]
    _job(settings, "d" * 32, "dress", JobStatus.COMPLETED, minutes_ago=10)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"productId": "tee", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = http.get(PREFIX, params=params).json()
        seen += [j["jobId"] for j in page["jobs"]]
        cursor = page.get("nextCursor")
        if not cursor:
            break
    assert seen == ids  # newest first, each once, across three pages
    done = http.get(PREFIX, params={"status": "COMPLETED"}).json()
    assert [j["jobId"] for j in done["jobs"]] == ["d" * 32]
    assert done["jobs"][0]["result"]["videoUrl"].startswith("http")
    assert http.get(PREFIX, params={"status": "NOPE"}).status_code == 422
    assert http.get(PREFIX, params={"cursor": "!!not-a-cursor"}).status_code == 422
    assert httpx.get(f"{http.base_url}{PREFIX}".replace("//api", "/api")).status_code == 401


def test_retry_and_cancel_over_the_api(
    settings: config.Settings, api: tuple[httpx.Client, Launches]
) -> None:
    http, launches = api
    failed = _job(settings, "e" * 32, "tee", JobStatus.FAILED)
    pending = _job(settings, "f" * 32, "dress", JobStatus.PENDING)
    assert http.post(f"{PREFIX}/{'0' * 32}/retry").status_code == 404
    assert http.post(f"{PREFIX}/{'0' * 32}/cancel").status_code == 404

    retried = http.post(f"{PREFIX}/{failed}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["jobId"] == failed and retried.json()["status"] == "PENDING"
    assert [c["job_id"] for c in launches.calls] == [failed]
    again = http.post(f"{PREFIX}/{failed}/retry")
    assert again.status_code == 409 and "only failed or cancelled" in again.json()["detail"]

    cancelled = http.post(f"{PREFIX}/{pending}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json() == {"jobId": pending, "status": "CANCELLED"}
    assert http.get(f"{PREFIX}/{pending}").json()["status"] == "CANCELLED"
    assert (
        httpx.post(f"{http.base_url}{PREFIX}/{failed}/cancel".replace("//api", "/api")).status_code
        == 401
    )


def test_swagger_ui_is_served_from_the_package_not_a_cdn(
    settings: config.Settings, api: tuple[httpx.Client, Launches]
) -> None:
    http, _ = api
    page = httpx.get(f"{str(http.base_url).rstrip('/')}/docs")
    assert page.status_code == 200 and "Swagger UI" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        got = httpx.get(f"{str(http.base_url).rstrip('/')}/docs/static/{asset}")
        assert got.status_code == 200 and len(got.content) > 10_000, asset


def test_media_urls_use_api_public_url_behind_a_proxy(
    settings: config.Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind a proxy the request's host is the proxy's upstream; the address other systems
    # use is API_PUBLIC_URL, the same one the webhooks carry.
    settings = reset_settings(monkeypatch, API_PUBLIC_URL="https://catwalk.shop.example/api-v1/")
    _seed(settings, tmp_path)
    _job(settings, "e" * 32, "tee", JobStatus.COMPLETED)
    app = create_app(settings, launcher=Launches(), token=TOKEN)  # type: ignore[arg-type]
    with running_server(app) as base_url:
        body = httpx.get(f"{base_url}{PREFIX}/{'e' * 32}", headers=AUTH).json()
    url = body["result"]["videoUrl"]
    assert url == f"https://catwalk.shop.example/api-v1/media/videos/tee/{'e' * 32}/video.mp4"


def test_a_failure_says_what_to_do_and_retry_can_ask_for_new_keyframes(
    settings: config.Settings, api: tuple[httpx.Client, Launches]
) -> None:
    http, launches = api
    refused = _job(settings, "a" * 32, "tee", JobStatus.FAILED)
    with session_scope(settings) as session:
        job = session.get(VideoJob, refused)
        assert job is not None
        job.failure_kind = "keyframes_refused"
        job.error_message = "video: the video model refused these keyframes: [model_moderated]"
        job.image_keys = {"start": "k/start.png", "end": "k/end.png"}
    shown = http.get(f"{PREFIX}/{refused}").json()
    assert shown["failure"]["kind"] == "keyframes_refused"
    assert shown["failure"]["actions"] == ["new_keyframes", "start_over"]
    assert shown["failure"]["nextAction"].startswith("Make new keyframes")
    assert shown["error"].endswith("[model_moderated]")  # the raw text, for "details"

    assert http.post(f"{PREFIX}/{refused}/retry", json={"newKeyframes": "maybe"}).status_code == 422
    assert http.post(f"{PREFIX}/{refused}/retry", json={"extra": 1}).status_code == 422
    retried = http.post(f"{PREFIX}/{refused}/retry", json={"newKeyframes": True})
    assert retried.status_code == 202, retried.text
    assert [c["job_id"] for c in launches.calls] == [refused]
    with session_scope(settings) as session:
        job = session.get(VideoJob, refused)
        assert job is not None and job.image_keys == {}  # new keyframes will be bought
        assert job.failure_kind is None and job.status is JobStatus.PENDING
    assert "failure" not in http.get(f"{PREFIX}/{refused}").json()
