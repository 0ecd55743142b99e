"""FalPikaVideoGenerator over real HTTP against the stateful fake fal queue (and
pytest-httpserver for one-off replies): the queue walk, result failures, re-attach without a
second submit, cancel on deadline and on an admin's cancel, and every error class."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from catwalk.clients.fal_pika import FalPikaVideoGenerator, fraction_from_logs
from catwalk.clients.media import probe_video
from catwalk.domain import ProviderProgress, SubmittedRequest, VideoRequest
from catwalk.errors import JobCancelled, JobTimedOut, PermanentProviderError, TransientProviderError
from catwalk.fakes import FakeFal, RunningServer, serve_in_thread

KEY = "fal-test-key:3b9d1e77"


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeFal, RunningServer]]:
    fal = FakeFal(api_key=KEY, video_width=96, queue_polls=2, progress_polls=2)
    with serve_in_thread(fal.app) as server:
        yield fal, server
    fal.close()


@pytest.fixture
def fal(fake: tuple[FakeFal, RunningServer]) -> FakeFal:
    fake[0].reset()
    return fake[0]


@pytest.fixture
def url(fake: tuple[FakeFal, RunningServer]) -> str:
    return fake[1].url


def _png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (54, 96), color).save(out, format="PNG")
    return out.getvalue()


def _request(**overrides: object) -> VideoRequest:
    fields: dict[str, object] = {
        "start_image": _png((200, 30, 30)),
        "end_image": _png((30, 30, 200)),
        "mime_type": "image/png",
        "style": "smooth",
        "duration_seconds": 2,
        "resolution": "720p",
    }
    fields.update(overrides)
    return VideoRequest(**fields)  # type: ignore[arg-type]


def _client(url: str, key: str = KEY, **kw: object) -> FalPikaVideoGenerator:
    return FalPikaVideoGenerator(
        api_key=SecretStr(key), base_url=url, poll_interval_seconds=0.0, **kw
    )  # type: ignore[arg-type]


def test_queue_walk_progress_download_and_poster(fal: FakeFal, url: str, tmp_path: Path) -> None:
    seen: list[object] = []
    video = _client(url).animate(
        _request(), work_dir=tmp_path, on_submitted=seen.append, on_progress=seen.append
    )
    submitted = seen[0]
    assert isinstance(submitted, SubmittedRequest)  # saved before any waiting
    assert submitted.status_url.endswith(f"/fal-ai/pika/requests/{submitted.request_id}/status")
    progress = [p for p in seen[1:] if isinstance(p, ProviderProgress)]
    assert [p.queue_position for p in progress if p.status == "IN_QUEUE"] == [1, 0]
    fractions = [p.fraction for p in progress if p.status == "IN_PROGRESS"]
    assert fractions == [0.33, 0.67]
    assert progress[-1].status == "COMPLETED"
    facts = probe_video(Path(video.path))
    assert facts.codec == "h264" and facts.duration_seconds == pytest.approx(2.0, abs=0.1)
    with Image.open(video.poster_path) as poster:
        assert poster.format == "JPEG" and poster.size == (facts.width, facts.height)
    assert (
        video.usage.units == 2 and video.usage.resolution == "720p" and video.usage.unit == "second"
    )
    assert video.provider_url and video.provider_url.startswith(url + "/_fake/files/")
    state = fal.state()
    assert state["submit"] == 1 and state["download"] == 1 and state["cancel"] == 0
    args = state["requests"][submitted.request_id]["arguments"]
    assert args["image_url_kinds"] == ["data-uri", "data-uri"]
    assert args["transitions"][0]["duration"] == 2 and args["resolution"] == "720p"
    assert state["requests"][submitted.request_id]["endpoint"] == "fal-ai/pika/v2.2/pikaframes"


def test_keyframes_as_urls_when_storage_gives_them(
    fal: FakeFal, url: str, tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/start.png").respond_with_data(
        _png((1, 150, 1)), content_type="image/png"
    )
    httpserver.expect_request("/end.png").respond_with_data(
        _png((150, 1, 1)), content_type="image/png"
    )
    seen: list[SubmittedRequest] = []
    _client(url).animate(
        _request(
            start_image_url=httpserver.url_for("/start.png"),
            end_image_url=httpserver.url_for("/end.png"),
        ),
        work_dir=tmp_path,
        on_submitted=seen.append,
    )
    assert fal.state()["requests"][seen[0].request_id]["arguments"]["image_url_kinds"] == [
        "url",
        "url",
    ]
    assert len(httpserver.log) == 2  # the "provider" fetched both keyframes itself


def test_rebuilt_status_urls_404_like_fal(fal: FakeFal, url: str) -> None:
    submitted = httpx.post(
        f"{url}/fal-ai/pika/v2.2/pikaframes",
        json={"image_urls": []},
        headers={"Authorization": f"Key {KEY}"},
    ).json()
    rebuilt = f"{url}/fal-ai/pika/v2.2/pikaframes/requests/{submitted['request_id']}/status"
    assert httpx.get(rebuilt, headers={"Authorization": f"Key {KEY}"}).status_code == 404
    assert (
        httpx.get(submitted["status_url"], headers={"Authorization": f"Key {KEY}"}).status_code
        == 202
    )


def test_resume_after_restart_does_not_submit_again(fal: FakeFal, url: str, tmp_path: Path) -> None:
    # A previous worker submitted, saved the answer, and died before the video was ready.
    client = _client(url)
    raw = httpx.post(
        f"{url}/fal-ai/pika/v2.2/pikaframes",
        json=client.request_body(_request()),
        headers={"Authorization": f"Key {KEY}"},
    ).json()
    saved = SubmittedRequest.from_dict(
        SubmittedRequest(
            raw["request_id"], raw["status_url"], raw["response_url"], raw["cancel_url"]
        ).to_dict()
    )

    def must_not_submit(_: SubmittedRequest) -> None:
        raise AssertionError("re-attaching must not submit")

    video = _client(url).animate(
        _request(), work_dir=tmp_path, resume=saved, on_submitted=must_not_submit
    )
    assert video.usage.request_id == saved.request_id
    assert fal.state()["submit"] == 1


def test_resume_of_a_failed_request_submits_a_fresh_one(
    fal: FakeFal, url: str, tmp_path: Path
) -> None:
    fal.add_fault("infrastructure", reason="runner_disconnected")
    client = _client(url)
    saved: list[SubmittedRequest] = []
    with pytest.raises(TransientProviderError, match="runner_disconnected") as info:
        client.animate(_request(), work_dir=tmp_path, on_submitted=saved.append)
    assert info.value.usage is not None and info.value.usage.billed is False  # 5xx: not billed
    # The retry re-attaches, finds the request spent, and only then submits again.
    fresh: list[SubmittedRequest] = []
    video = client.animate(
        _request(), work_dir=tmp_path, resume=saved[0], on_submitted=fresh.append
    )
    assert fresh and fresh[0].request_id != saved[0].request_id
    assert video.usage.request_id == fresh[0].request_id
    assert fal.state()["submit"] == 2


def test_cancel_when_the_deadline_passes(fal: FakeFal, url: str, tmp_path: Path) -> None:
    fal.add_fault("stuck")
    saved: list[SubmittedRequest] = []
    client = FalPikaVideoGenerator(api_key=SecretStr(KEY), base_url=url, poll_interval_seconds=0.02)
    with pytest.raises(JobTimedOut, match="time limit") as info:
        client.animate(
            _request(),
            work_dir=tmp_path,
            on_submitted=saved.append,
            deadline=time.monotonic() + 0.3,
        )
    assert KEY not in str(info.value)
    state = fal.state()
    assert state["cancel"] == 1 and state["requests"][saved[0].request_id]["cancelled"] is True


def test_no_submit_once_the_deadline_has_passed(fal: FakeFal, url: str, tmp_path: Path) -> None:
    with pytest.raises(JobTimedOut):
        _client(url).animate(_request(), work_dir=tmp_path, deadline=time.monotonic() - 1)
    assert fal.state()["submit"] == 0


def test_cancel_when_an_admin_cancels(fal: FakeFal, url: str, tmp_path: Path) -> None:
    def on_progress(progress: ProviderProgress) -> None:
        if progress.status == "IN_PROGRESS":
            raise JobCancelled("cancelled by an admin")

    with pytest.raises(JobCancelled):
        _client(url).animate(_request(), work_dir=tmp_path, on_progress=on_progress)
    assert fal.state()["cancel"] == 1


def test_cancel_when_the_request_cannot_be_saved(fal: FakeFal, url: str, tmp_path: Path) -> None:
    def on_submitted(_: SubmittedRequest) -> None:
        raise OSError("database is gone")

    with pytest.raises(OSError):
        _client(url).animate(_request(), work_dir=tmp_path, on_submitted=on_submitted)
    assert fal.state()["cancel"] == 1


@pytest.mark.parametrize(
    ("kind", "options", "error", "text"),
    [
        (
            "content_policy",
            {},
            PermanentProviderError,
            "the video model refused these keyframes: content_policy_violation",
        ),
        (
            "validation",
            {},
            PermanentProviderError,
            "transitions.0.duration: Input should be less than or equal to 10",
        ),
        ("infrastructure", {}, TransientProviderError, "request_timeout"),
        ("rate_limit", {"on": "submit"}, TransientProviderError, "rate limited (HTTP 429)"),
        (
            "unavailable",
            {"on": "submit"},
            TransientProviderError,
            "unavailable at submit (HTTP 503)",
        ),
        ("malformed", {"on": "submit"}, TransientProviderError, "answered the submit unreadably"),
        # A blip without a deadline is asked again a bounded number of times, then raised.
        (
            "unavailable",
            {"on": "status", "count": 50},
            TransientProviderError,
            "unavailable at status (HTTP 503)",
        ),
        ("malformed", {"on": "status"}, TransientProviderError, "status answer is unreadable"),
        (
            "unavailable",
            {"on": "result", "count": 50},
            TransientProviderError,
            "unavailable at result (HTTP 503)",
        ),
        ("unavailable", {"on": "download"}, TransientProviderError, "downloading the video"),
    ],
)
def test_failure_shapes(
    fal: FakeFal,
    url: str,
    tmp_path: Path,
    kind: str,
    options: dict[str, object],
    error: type[Exception],
    text: str,
) -> None:
    fal.add_fault(kind, **options)
    with pytest.raises(error) as info:
        _client(url).animate(_request(), work_dir=tmp_path)
    assert type(info.value) is error
    assert text in str(info.value)
    assert KEY not in str(info.value)


@pytest.mark.parametrize("on", ["status", "result"])
@pytest.mark.parametrize("kind", ["unavailable", "rate_limit"])
def test_poll_blips_are_asked_again_in_place(
    fal: FakeFal, url: str, tmp_path: Path, on: str, kind: str
) -> None:
    # Three 503s/429s in a row on a poll never end the attempt: the same request finishes.
    fal.add_fault(kind, on=on, count=3, retry_after="0")
    video = _client(url).animate(_request(), work_dir=tmp_path, deadline=time.monotonic() + 60)
    assert Path(video.path).exists()
    state = fal.state()
    assert state["submit"] == 1 and state["cancel"] == 0 and state["pending_faults"] == []


def test_poll_blips_until_the_deadline_cancel_once(fal: FakeFal, url: str, tmp_path: Path) -> None:
    fal.add_fault("unavailable", on="status", count=10_000)
    with pytest.raises(JobTimedOut) as info:
        _client(url).animate(_request(), work_dir=tmp_path, deadline=time.monotonic() + 1.5)
    assert info.value.provider_request_state == "cancelled"  # type: ignore[attr-defined]
    assert fal.state()["cancel"] == 1 and fal.state()["submit"] == 1


def test_content_policy_attempt_is_recorded_unbilled(
    fal: FakeFal, url: str, tmp_path: Path
) -> None:
    fal.add_fault("content_policy", reason="sexual")
    with pytest.raises(PermanentProviderError, match=r"\[sexual\]") as info:
        _client(url).animate(_request(), work_dir=tmp_path)
    assert info.value.usage is not None and info.value.usage.billed is False


def test_real_validation_of_the_input(fal: FakeFal, url: str, tmp_path: Path) -> None:
    with pytest.raises(PermanentProviderError, match="Total duration must be at most 25 seconds"):
        _client(url).animate(_request(duration_seconds=30), work_dir=tmp_path)


def test_rate_limit_retry_after_and_bad_key(fal: FakeFal, url: str, tmp_path: Path) -> None:
    fal.add_fault("rate_limit", on="submit", retry_after="9")
    with pytest.raises(TransientProviderError) as info:
        _client(url).animate(_request(), work_dir=tmp_path)
    assert info.value.retry_after_seconds == 9.0
    with pytest.raises(PermanentProviderError, match="rejected the API key") as bad:
        _client(url, key="not-the-key").animate(_request(), work_dir=tmp_path)
    assert "not-the-key" not in str(bad.value)


def test_the_cdn_download_carries_no_key(
    tmp_path: Path, httpserver: HTTPServer, fal: FakeFal, url: str
) -> None:
    """The video URL is a third-party CDN: the fal key must not travel there."""
    seen: list[SubmittedRequest] = []
    video = _client(url).animate(_request(), work_dir=tmp_path / "a", on_submitted=seen.append)
    mp4 = Path(video.path).read_bytes()
    status = f"{httpserver.url_for('/q')}/status"
    httpserver.expect_request("/q/status").respond_with_json({"status": "COMPLETED", "logs": None})
    httpserver.expect_request("/q").respond_with_json(
        {"video": {"url": httpserver.url_for("/cdn/v.mp4")}}
    )
    httpserver.expect_request("/cdn/v.mp4").respond_with_data(mp4, content_type="video/mp4")
    resumed = SubmittedRequest(
        "q-1", status, httpserver.url_for("/q"), httpserver.url_for("/q/cancel")
    )
    _client(url).animate(_request(), work_dir=tmp_path / "b", resume=resumed)
    by_path = {req.path: req for req, _ in httpserver.log}
    assert by_path["/q/status"].headers["Authorization"] == f"Key {KEY}"
    assert "Authorization" not in by_path["/cdn/v.mp4"].headers


def test_fraction_from_logs() -> None:
    assert fraction_from_logs(None) == (None, "")
    assert fraction_from_logs([{"message": "step 12/48"}])[0] == 0.25
    assert fraction_from_logs([{"message": "40%"}, {"message": "loading weights"}]) == (
        None,
        "loading weights",
    )


def test_a_resumed_request_is_looked_at_before_any_deadline_cancels_it(
    fal: FakeFal, url: str, tmp_path: Path
) -> None:
    """Issue #13: a run resumed after a crash, already past its time limit, polls its saved
    request first; a finished one is collected (it is paid for), never cancelled blind."""
    client = _client(url)
    raw = httpx.post(
        f"{url}/fal-ai/pika/v2.2/pikaframes",
        json=client.request_body(_request()),
        headers={"Authorization": f"Key {KEY}"},
    ).json()
    saved = SubmittedRequest(
        raw["request_id"], raw["status_url"], raw["response_url"], raw["cancel_url"]
    )
    for _ in range(6):  # the provider finishes while no worker is alive
        httpx.get(saved.status_url, headers={"Authorization": f"Key {KEY}"})
    video = client.animate(
        _request(), work_dir=tmp_path, resume=saved, deadline=time.monotonic() - 1
    )
    assert video.usage.request_id == saved.request_id
    state = fal.state()
    assert state["submit"] == 1 and state["cancel"] == 0
