"""The gemini keyframe judge against the fake Gemini server over real HTTP: the request's
structured-output form, verdicts read and priced from usageMetadata, errors typed like the
image client's; then the whole flow with Nano Banana and Pika fakes: a matching pair passes
with one judge call and one video, a failing end frame is remade once and passes (3 image
calls, 2 judge calls, 1 video), a frame that never passes fails the job with the judge's
issues and zero video submits, a malformed answer is retried and then fails clearly."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from catwalk.db import queries, session_scope
from PIL import Image
from pydantic import SecretStr

from catwalk import pricing
from catwalk.clients.gemini import GeminiImageGenerator
from catwalk.clients.judge_gemini import MAX_OUTPUT_TOKENS, GeminiKeyframeJudge, parse_answer
from catwalk.config import Settings
from catwalk.domain import ImageRequest, JobStatus, JudgeRequest
from catwalk.errors import PermanentProviderError, TransientProviderError
from catwalk.fakes import FakeFal, FakeGemini, serve_in_thread
from catwalk.submission import submit_job
from tests.conftest import reset_settings

KEY = "AIzaSy-judge-secret-5d1e"
FAL_KEY = "fal-judge-id:judge-secret-90aa"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeGemini, FakeFal, str, str]]:
    gemini = FakeGemini(api_key=KEY, width=96)
    fal = FakeFal(api_key=FAL_KEY, video_width=96, queue_polls=1, progress_polls=1)
    with serve_in_thread(gemini.app) as g, serve_in_thread(fal.app) as f:
        yield gemini, fal, g.url, f.url
    fal.close()


def _photo(colour: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 160), colour).save(out, format="JPEG")
    return out.getvalue()


def _keyframes(url: str, photo: bytes, *, seeds: tuple[int, int] = (5, 5)) -> dict[str, bytes]:
    images = GeminiImageGenerator(api_key=SecretStr(KEY), base_url=url)
    return {
        pose: images.generate(
            ImageRequest(photo, "image/jpeg", "female", pose, seed)  # type: ignore[arg-type]
        ).data
        for pose, seed in zip(("start", "end"), seeds, strict=True)
    }


def test_parse_answer_refuses_anything_but_the_schema() -> None:
    ok = '{"verdict":"pass","garmentMatch":0.9,"samePerson":1,"failedFrames":[],"issues":[]}'
    assert parse_answer(ok) == (True, 0.9, 1.0, (), ())
    fail = '{"verdict":"fail","garmentMatch":0.2,"samePerson":0.9,"failedFrames":[],"issues":["x"]}'
    assert parse_answer(fail)[3] == ("start", "end")  # a fail naming no frame remakes both
    for bad in (
        '{"verdict": "pass", "garmentMatch": ',
        "[]",
        ok.replace('"pass"', '"maybe"'),
        ok.replace("0.9", "1.5"),
        ok.replace("0.9", '"high"'),
        ok.replace('"failedFrames":[]', '"failedFrames":["middle"]'),
        ok.replace('"failedFrames":[]', '"failedFrames":["end"]'),
        ok.replace(',"issues":[]', ""),
    ):
        with pytest.raises(ValueError):
            parse_answer(bad)


def test_the_judge_passes_its_pair_and_fails_foreign_frames(
    servers: tuple[FakeGemini, FakeFal, str, str],
) -> None:
    gemini, _, url, _ = servers
    gemini.reset()
    photo = _photo()
    frames = _keyframes(url, photo)
    judge = GeminiKeyframeJudge(api_key=SecretStr(KEY), base_url=url)
    verdict = judge.judge(JudgeRequest(photo, "image/jpeg", frames["start"], frames["end"]))
    assert verdict.passed and verdict.failed_frames == () and verdict.garment_match > 0.9
    request = gemini.state()["requests"][-1]
    assert request["model"] == "gemini-2.5-flash" and request["images"] == 3
    body = judge.request_body(JudgeRequest(photo, "image/jpeg", frames["start"], frames["end"]))
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["required"] == [
        "verdict",
        "garmentMatch",
        "samePerson",
        "failedFrames",
        "issues",
    ]
    # Priced from usageMetadata at the text model's rates (thinking tokens as output).
    usage = verdict.usage
    assert usage.service == "keyframe_check" and usage.unit == "output_token"
    assert usage.units > 120 and int(usage.details["input_tokens"]) > 3 * 258
    expected = (
        usage.units * Decimal("0.0000025")
        + Decimal(int(usage.details["input_tokens"])) * Decimal("0.0000003")
    ).quantize(Decimal("0.000001"))
    assert pricing.charge_for(usage).amount == expected > 0

    # A frame drawn for another product photo, and another person in the end frame.
    other = _keyframes(url, _photo((200, 40, 40)))
    foreign = judge.judge(JudgeRequest(photo, "image/jpeg", frames["start"], other["end"]))
    assert not foreign.passed and foreign.failed_frames == ("end",)
    assert foreign.issues == ("end: the garment is not the product in the photo",)
    stranger = _keyframes(url, photo, seeds=(5, 6))
    person = judge.judge(JudgeRequest(photo, "image/jpeg", frames["start"], stranger["end"]))
    assert not person.passed and "different person" in person.issues[0]

    # Told over HTTP to fail the start frame.
    httpx.post(
        f"{url}/_fake/faults",
        json={"kind": "judge_fail", "extra": {"frames": ["start"], "issue": "start: logo missing"}},
    ).raise_for_status()
    told = judge.judge(JudgeRequest(photo, "image/jpeg", frames["start"], frames["end"]))
    assert not told.passed and told.failed_frames == ("start",)
    assert told.issues == ("start: logo missing",)


@pytest.mark.parametrize(
    ("kind", "error", "text"),
    [
        ("judge_malformed", TransientProviderError, "not the verdict asked for"),
        ("unavailable", TransientProviderError, "keyframe judge is unavailable (HTTP 503"),
        ("rate_limit", TransientProviderError, "keyframe judge is rate limited (HTTP 429"),
        ("prompt_block", PermanentProviderError, "refused the images: PROHIBITED_CONTENT"),
        ("malformed", TransientProviderError, "unreadable answer"),
    ],
)
def test_judge_errors_are_typed_like_the_image_clients(
    servers: tuple[FakeGemini, FakeFal, str, str], kind: str, error: type, text: str
) -> None:
    gemini, _, url, _ = servers
    gemini.reset()
    photo = _photo()
    frames = _keyframes(url, photo)
    gemini.add_fault(kind, on="judge")
    judge = GeminiKeyframeJudge(api_key=SecretStr(KEY), base_url=url)
    with pytest.raises(error, match=text.replace("(", r"\(")) as caught:
        judge.judge(JudgeRequest(photo, "image/jpeg", frames["start"], frames["end"]))
    assert KEY not in str(caught.value)
    if kind == "judge_malformed":
        assert caught.value.usage is not None  # billed: it reaches the ledger


class _NoLaunch:
    def launch(self, *, job_id: str, product_id: str, options: dict[str, Any]) -> str | None:
        return None


@pytest.fixture
def providers(
    settings: Settings,
    servers: tuple[FakeGemini, FakeFal, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[FakeGemini, FakeFal]]:
    gemini, fal, gemini_url, fal_url = servers
    gemini.reset()
    fal.reset()
    reset_settings(
        monkeypatch,
        IMAGE_PROVIDER="nano-banana",
        NANO_BANANA_API_URL=gemini_url,
        NANO_BANANA_API_KEY=KEY,
        VIDEO_PROVIDER="pika",
        PIKA_LABS_API_URL=fal_url,
        PIKA_LABS_API_KEY=FAL_KEY,
        PROVIDER_POLL_INTERVAL_SECONDS="0",
    )
    yield gemini, fal


def _run(tmp_path: Path) -> Any:
    from catwalk.flows.generate_product_video import generate_product_video

    photo = tmp_path / "tee.jpg"
    photo.write_bytes(_photo())
    with session_scope() as session:
        queries.upsert_product(session=session, product_id="tee-q", name="Tee", images=[str(photo)])
    job_id = submit_job("tee-q", {}, launcher=_NoLaunch()).job_id
    generate_product_video("tee-q", None, job_id, return_state=True)
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        rows = list(queries.ledger_for_job(session=session, job_id=job_id))
        session.expunge_all()
    return job, rows


def _counts(gemini: FakeGemini) -> tuple[int, int]:
    state = gemini.state()
    return state["calls"] - state["judge_calls"], state["judge_calls"]


pytestmark_flow = pytest.mark.usefixtures("prefect_server")


@pytestmark_flow
def test_flow_a_matching_pair_passes_with_one_judge_call(
    providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    gemini, fal = providers
    job, rows = _run(tmp_path)
    assert job.status is JobStatus.COMPLETED, job.error_message
    assert _counts(gemini) == (2, 1) and fal.state()["submit"] == 1
    assert job.quality["mode"] == "enforce" and job.quality["judge"] == "gemini"
    judged = [r for r in rows if r.service == "keyframe_check"]
    assert len(judged) == 1 and judged[0].model == "gemini-2.5-flash" and judged[0].amount > 0
    assert job.total_cost == sum(r.amount for r in rows)
    assert Decimal(job.quality["checkCost"]) == judged[0].amount
    # Reserved up front: the worst case of the check, which the job stayed within.
    assert job.estimated_cost == pricing.estimate_job_cost() and job.total_cost < job.estimated_cost


@pytestmark_flow
def test_flow_a_failing_end_frame_is_remade_once_then_passes(
    providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    gemini, fal = providers
    gemini.add_fault("judge_fail", extra={"frames": ["end"], "issue": "end: the tee is red"})
    job, rows = _run(tmp_path)
    assert job.status is JobStatus.COMPLETED, job.error_message
    assert _counts(gemini) == (3, 2) and fal.state()["submit"] == 1
    # Only the end frame was remade, with the judge's issue in its prompt.
    image_prompts = [r["prompt"] for r in gemini.state()["requests"] if r["images"] == 1]
    assert "END POSE" in image_prompts[2] and "fix this: end: the tee is red" in image_prompts[2]
    services = [r.service for r in rows]
    assert services.count("nano_banana") == 3 and services.count("keyframe_check") == 2
    quality = job.quality
    assert [v["verdict"] for v in quality["verdicts"]] == ["fail", "pass"]
    assert quality["regenerations"] == 1
    remade = [r for r in rows if "remade" in (r.note or "")]
    assert Decimal(quality["regenerationCost"]) == remade[0].amount > 0
    assert job.total_cost == sum(r.amount for r in rows)


@pytestmark_flow
def test_flow_a_frame_that_never_passes_fails_with_the_issues_and_no_video(
    providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    gemini, fal = providers
    gemini.add_fault(
        "judge_fail", count=3, extra={"frames": ["end"], "issue": "end: the logo is missing"}
    )
    job, rows = _run(tmp_path)
    assert job.status is JobStatus.FAILED
    assert "keyframes failed the check after 2 regenerations" in (job.error_message or "")
    assert "end: the logo is missing" in (job.error_message or "")
    assert fal.state()["submit"] == 0 and _counts(gemini) == (4, 3)
    assert [r.service for r in rows].count("pika") == 0
    assert job.total_cost == sum(r.amount for r in rows) <= job.estimated_cost


@pytestmark_flow
def test_flow_a_malformed_answer_is_retried_then_fails_clearly(
    providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    from catwalk.tasks.quality import check_keyframes

    gemini, fal = providers
    retries = check_keyframes.retries  # the shared retry policy (TASK_RETRIES at import)
    assert retries >= 1
    gemini.add_fault("judge_malformed", count=retries + 1)
    job, rows = _run(tmp_path)
    assert job.status is JobStatus.FAILED
    assert "the keyframe judge's answer is not the verdict asked for" in (job.error_message or "")
    assert fal.state()["submit"] == 0 and _counts(gemini) == (2, retries + 1)
    judged = [r for r in rows if r.service == "keyframe_check"]
    assert len(judged) == retries + 1 and not any(r.succeeded for r in judged)
    assert job.quality.get("verdicts") == []  # nothing passed silently
    assert job.total_cost == sum(r.amount for r in rows)


def test_the_worst_case_is_reserved_for_the_check(settings: Settings) -> None:
    paid = Settings(IMAGE_PROVIDER="nano-banana", VIDEO_PROVIDER="pika", VIDEO_DURATION_SECONDS=5)
    image = Decimal("0.0387")
    judge = (
        Decimal(MAX_OUTPUT_TOKENS) * Decimal("0.0000025") + Decimal(4096) * Decimal("0.0000003")
    ).quantize(Decimal("0.000001"))
    # 2 frames + 2 rounds remaking both + 3 judge calls + the video.
    assert pricing.estimate_job_cost(paid) == 6 * image + 3 * judge + Decimal("0.20")
    off = Settings(IMAGE_PROVIDER="nano-banana", VIDEO_PROVIDER="pika", KEYFRAME_CHECK="off")
    assert pricing.estimate_job_cost(off) == Decimal("0.2774")


@pytestmark_flow
def test_flow_warn_mode_goes_on_when_the_judge_fails(
    providers: tuple[FakeGemini, FakeFal], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gemini, fal = providers
    reset_settings(monkeypatch, KEYFRAME_CHECK="warn")
    gemini.add_fault("prompt_block", on="judge")
    job, rows = _run(tmp_path)
    assert job.status is JobStatus.COMPLETED, job.error_message
    assert fal.state()["submit"] == 1 and job.quality["verdicts"] == []
    judged = [r for r in rows if r.service == "keyframe_check"]
    assert len(judged) == 1 and judged[0].succeeded is False
