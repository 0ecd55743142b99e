"""The whole flow in-process with IMAGE_PROVIDER=nano-banana and VIDEO_PROVIDER=pika against
the fake servers over real HTTP: cost rows and job totals, transient errors retried then
succeeding (re-attaching to the saved fal request, never submitting twice), permanent errors
failing at once with a readable message, and API keys absent from every log and record."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from catwalk.db import queries, session_scope
from catwalk.db.models import LedgerEntry
from PIL import Image

from catwalk.config import Settings
from catwalk.domain import JobStatus
from catwalk.fakes import FakeFal, FakeGemini, serve_in_thread
from catwalk.submission import submit_job
from tests.conftest import reset_settings

GEMINI_KEY = "AIzaSy-flow-secret-0f3c9a"
FAL_KEY = "fal-flow-id:flow-secret-77e2"


class _NoLaunch:
    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], run_key: str | None = None
    ) -> str | None:
        return None


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeGemini, FakeFal, str, str]]:
    gemini = FakeGemini(api_key=GEMINI_KEY, width=96)
    fal = FakeFal(api_key=FAL_KEY, video_width=96, queue_polls=1, progress_polls=1)
    with serve_in_thread(gemini.app) as g, serve_in_thread(fal.app) as f:
        yield gemini, fal, g.url, f.url
    fal.close()


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
        NANO_BANANA_API_KEY=GEMINI_KEY,
        VIDEO_PROVIDER="pika",
        PIKA_LABS_API_URL=fal_url,
        PIKA_LABS_API_KEY=FAL_KEY,
        PROVIDER_POLL_INTERVAL_SECONDS="0",
        # These tests count image and video calls; the keyframe check has its own tests
        # against these servers (tests/test_keyframe_judge_gemini.py).
        KEYFRAME_CHECK="off",
    )
    yield gemini, fal


def _product(tmp_path: Path) -> str:
    photo = tmp_path / "tee.jpg"
    Image.new("RGB", (120, 160), (30, 120, 200)).save(photo, format="JPEG")
    with session_scope() as session:
        queries.upsert_product(
            session=session, product_id="tee-1", name="Blue tee", images=[str(photo)]
        )
    return "tee-1"


def _run(product_id: str) -> str:
    from catwalk.flows.generate_product_video import generate_product_video

    job_id = submit_job(
        product_id, {"modelType": "male", "videoStyle": "dynamic"}, launcher=_NoLaunch()
    ).job_id
    generate_product_video(product_id, None, job_id, return_state=True)
    return job_id


def _ledger(job_id: str) -> list[LedgerEntry]:
    with session_scope() as session:
        rows = list(queries.ledger_for_job(session=session, job_id=job_id))
        session.expunge_all()
    return rows


def _image_amount(input_tokens: int) -> Decimal:
    return (
        Decimal(1290) * Decimal("0.00003") + Decimal(input_tokens) * Decimal("0.0000003")
    ).quantize(Decimal("0.000001"))


def test_full_flow_records_costs(
    prefect_server: None, providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    gemini, fal = providers
    job_id = _run(_product(tmp_path))
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        assert job.status is JobStatus.COMPLETED, job.error_message
        assert (job.image_provider, job.video_provider) == ("gemini", "fal")
        assert job.video_request_id and job.video_request_urls["status_url"].endswith("/status")
        assert job.provider_video_url and "/_fake/files/" in job.provider_video_url
        totals = (job.nano_banana_cost, job.pika_labs_cost, job.total_cost)
    rows = _ledger(job_id)
    images = [r for r in rows if r.service == "nano_banana"]
    videos = [r for r in rows if r.service == "pika"]
    assert len(images) == 2 and len(videos) == 1 and all(r.succeeded for r in rows)
    # Amounts from the fake's own usage report: 1290 output tokens + the prompt's input tokens.
    prompts = [r["prompt"] for r in gemini.state()["requests"]]
    expected_images = [_image_amount(258 + len(p) // 4) for p in prompts]
    assert sorted(r.amount for r in images) == sorted(expected_images)
    assert {r.model for r in images} == {"gemini-2.5-flash-image"} and images[
        0
    ].unit == "output_token"
    # 2 s of 720p video, billed at fal's 5 s minimum: 5 x $0.04.
    assert (
        videos[0].amount == Decimal("0.20")
        and videos[0].units == 2
        and videos[0].resolution == "720p"
    )
    assert videos[0].provider_request_id == job.video_request_id
    assert totals == (sum(expected_images), Decimal("0.20"), sum(expected_images) + Decimal("0.20"))
    assert fal.state()["submit"] == 1 and gemini.state()["calls"] == 2


def test_transient_errors_are_retried_then_succeed(
    prefect_server: None, providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    gemini, fal = providers
    gemini.add_fault("rate_limit", retry_delay="0s")
    gemini.add_fault("unavailable")
    fal.add_fault("unavailable", on="status")  # after the submit: asked again in place
    job_id = _run(_product(tmp_path))
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        assert job.status is JobStatus.COMPLETED, job.error_message
        # Two image retries; the status 503 is asked again in place, not a failed attempt.
        assert job.retry_count == 2
        failures = [
            e.message
            for e in queries.events_for_job(session=session, job_id=job_id)
            if e.kind == "failed"
        ]
    assert any("rate limited" in m for m in failures) and any("HTTP 503" in m for m in failures)
    assert not any("status" in m for m in failures)
    assert gemini.state()["calls"] == 4  # two refused, two images
    assert fal.state()["submit"] == 1 and fal.state()["cancel"] == 0
    rows = _ledger(job_id)
    assert [r.service for r in rows].count("nano_banana") == 2  # 429 and 503 are not billed
    assert [r.service for r in rows].count("pika") == 1


def test_permanent_error_fails_at_once_with_a_readable_message(
    prefect_server: None, providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    gemini, fal = providers
    gemini.add_fault("image_safety")
    job_id = _run(_product(tmp_path))
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        assert job.status is JobStatus.FAILED
        assert "the image model refused this photo: IMAGE_SAFETY" in (job.error_message or "")
        assert job.retry_count == 0
        billed = job.nano_banana_cost
    assert gemini.state()["calls"] == 1 and fal.state()["submit"] == 0
    rows = _ledger(job_id)
    # The blocked call was billed for its input tokens: one failed row with that amount.
    assert len(rows) == 1 and rows[0].succeeded is False and rows[0].amount > 0
    assert billed == rows[0].amount


def test_content_policy_at_the_video_step_fails_the_job(
    prefect_server: None, providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    _, fal = providers
    fal.add_fault("content_policy")
    job_id = _run(_product(tmp_path))
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert "content_policy_violation" in (job.error_message or "")
    assert fal.state()["submit"] == 1
    pika = [r for r in _ledger(job_id) if r.service == "pika"]
    assert len(pika) == 1 and pika[0].succeeded is False and pika[0].amount == 0


def _prefect_logs(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # send what is still batched
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [log.message for log in logs]


def test_api_keys_never_leak(
    prefect_server: None,
    providers: tuple[FakeGemini, FakeFal],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prefect.logging.handlers import APILogHandler

    gemini, fal = providers
    gemini.add_fault("rate_limit")
    fal.add_fault("unavailable", on="submit")
    fal.add_fault("content_policy")
    # Everything at DEBUG: our clients, httpx/httpcore, Prefect; client logs also to the API.
    api_handler = APILogHandler()
    clients_logger = logging.getLogger("catwalk")
    touched = {
        name: logging.getLogger(name).level
        for name in (
            "prefect",
            "prefect.flow_runs",
            "prefect.task_runs",
            "clients",
            "httpx",
            "httpcore",
        )
    }
    # Prefect's first logging setup replaces the root handlers (caplog's too): run it now,
    # then put caplog's handler back, so later setups are incremental and keep it.
    from prefect.logging.configuration import setup_logging

    setup_logging()
    if caplog.handler not in logging.getLogger().handlers:
        logging.getLogger().addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    for name in touched:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger("prefect").addHandler(caplog.handler)
    clients_logger.addHandler(api_handler)
    try:
        job_id = _run(_product(tmp_path))
    finally:
        clients_logger.removeHandler(api_handler)
        logging.getLogger("prefect").removeHandler(caplog.handler)
        for name, level in touched.items():
            logging.getLogger(name).setLevel(level)
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.status is JobStatus.FAILED and job.flow_run_id
        texts = [job.error_message or "", str(job.video_request_urls), job.current_step]
        texts += [e.message for e in queries.events_for_job(session=session, job_id=job_id)]
        texts += [
            f"{r.note} {r.provider_request_id}"
            for r in queries.ledger_for_job(session=session, job_id=job_id)
        ]
        flow_run_id = job.flow_run_id
    prefect_logs = _prefect_logs(flow_run_id)
    captured = caplog.text + "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    # The run really logged and really failed through both providers...
    assert "fal: submitted" in captured and "HTTP/1.1 429" in captured
    assert any("rate limited" in t for t in texts) and any("HTTP 503" in t for t in texts)
    assert any("fal: submitted" in m for m in prefect_logs), "client logs reach the flow run"
    assert any("content_policy_violation" in m for m in prefect_logs)
    # ...and neither key, nor its secret half, appears anywhere.
    everything = "\n".join([captured, *prefect_logs, *texts])
    for secret in (GEMINI_KEY, FAL_KEY, FAL_KEY.split(":")[1]):
        assert secret not in everything


def _explained(job_id: str) -> dict[str, Any]:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        return queries.job_to_contract(job)


def _image_calls(gemini: FakeGemini) -> int:
    return len(gemini.state()["requests"])


def test_refused_keyframes_offer_new_keyframes_which_buy_new_frames_and_a_video(
    prefect_server: None, providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    from catwalk.flows.generate_product_video import generate_product_video

    from catwalk.submission import retry_cost, retry_job

    gemini, fal = providers
    fal.add_fault("content_policy")
    product_id = _product(tmp_path)
    job_id = _run(product_id)
    failed = _explained(job_id)
    assert failed["status"] == "FAILED"
    # The plain words and the way out; a plain retry is not offered (it is refused again).
    assert failed["failure"]["kind"] == "keyframes_refused"
    assert failed["failure"]["actions"] == ["new_keyframes", "start_over"]
    assert "content policy" in failed["failure"]["reason"]
    assert "content_policy_violation" in failed["error"]  # the raw text stays, as details
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        old_frames = dict(job.image_request_ids)
    assert _image_calls(gemini) == 2 and fal.state()["submit"] == 1

    quote = retry_cost(job_id, new_keyframes=True)
    assert (quote.images_to_make, quote.video_to_make) == (2, True)
    assert quote.amount is not None and quote.amount > 0
    retry_job(job_id, launcher=_NoLaunch(), new_keyframes=True)
    generate_product_video(product_id, None, job_id, return_state=True)

    done = _explained(job_id)
    assert done["status"] == "COMPLETED", done.get("error")
    assert "failure" not in done
    assert _image_calls(gemini) == 4 and fal.state()["submit"] == 2  # both bought again
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.failure_kind is None
        assert set(job.image_request_ids) == {"start", "end"}
        assert job.image_request_ids != old_frames  # new frames, not the refused ones
    services = sorted((r.service, r.succeeded) for r in _ledger(job_id))
    assert services == [
        ("nano_banana", True),
        ("nano_banana", True),
        ("nano_banana", True),
        ("nano_banana", True),
        ("pika", False),
        ("pika", True),
    ]


def test_a_refused_photo_offers_only_to_start_over(
    prefect_server: None, providers: tuple[FakeGemini, FakeFal], tmp_path: Path
) -> None:
    gemini, fal = providers
    gemini.add_fault("image_safety")
    job_id = _run(_product(tmp_path))
    failed = _explained(job_id)
    assert failed["status"] == "FAILED"
    assert failed["failure"]["kind"] == "photo_refused"
    assert failed["failure"]["actions"] == ["start_over"]
    assert fal.state()["submit"] == 0  # no video bought for a photo the image model refused


def test_a_provider_that_stays_down_offers_a_retry_that_reuses_the_keyframes(
    prefect_server: None,
    providers: tuple[FakeGemini, FakeFal],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from catwalk.flows.generate_product_video import generate_product_video

    from catwalk.submission import retry_job

    gemini, fal = providers
    monkeypatch.setenv("TASK_RETRIES", "0")
    reset_settings(monkeypatch)
    fal.add_fault("unavailable", on="submit", count=100)
    product_id = _product(tmp_path)
    job_id = _run(product_id)
    failed = _explained(job_id)
    assert failed["status"] == "FAILED", failed
    assert failed["failure"]["kind"] == "provider_down"
    assert failed["failure"]["actions"] == ["retry", "start_over"]

    fal.reset()
    retry_job(job_id, launcher=_NoLaunch())
    generate_product_video(product_id, None, job_id, return_state=True)
    assert _explained(job_id)["status"] == "COMPLETED"
    assert _image_calls(gemini) == 2  # the keyframes were reused, not bought again
