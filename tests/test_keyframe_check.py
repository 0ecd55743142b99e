"""The keyframe check offline: the offline judge's thresholds on real composer frames, and the
whole flow with the offline providers (pass; a mismatched end frame remade then passing; a
frame that never passes failing the job with the judge's issues and no video bought; warn
mode going on; the ledger and the job totals including every judge call)."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from catwalk.db import session_scope
from catwalk.db.models import LedgerEntry
from PIL import Image, ImageOps
from sqlalchemy import select

from catwalk import config, pricing
from catwalk.catalog import write_demo_photos
from catwalk.cli.demo import seed_demo_catalog
from catwalk.clients import factory
from catwalk.clients.judge_offline import OfflineKeyframeJudge
from catwalk.clients.offline import OfflineImageGenerator, recolour
from catwalk.domain import ImageRequest, JobStatus, JudgeRequest
from tests.conftest import reset_settings
from tests.helpers import load_job, run_job_inline


def _frames(photo: bytes, *, model_type: str = "female", seed: int = 7) -> dict[str, bytes]:
    generator = OfflineImageGenerator(width=160)
    return {
        pose: generator.generate(
            ImageRequest(
                product_image=photo,
                product_image_mime="image/jpeg",
                model_type=model_type,  # type: ignore[arg-type]
                pose=pose,  # type: ignore[arg-type]
                identity_seed=seed,
            )
        ).data
        for pose in ("start", "end")
    }


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("photos")
    return {name: Path(path).read_bytes() for name, path in write_demo_photos(folder).items()}


@pytest.mark.parametrize("model_type", ["female", "male"])
def test_offline_judge_passes_the_composers_frames_and_fails_drift(
    photos: dict[str, bytes], model_type: str
) -> None:
    judge = OfflineKeyframeJudge()
    names = sorted(photos)
    for i, name in enumerate(names):
        photo, other = photos[name], photos[names[(i + 1) % len(names)]]
        clean = _frames(photo, model_type=model_type)

        def verdict(end: bytes, photo: bytes = photo, clean: dict[str, bytes] = clean):
            return judge.judge(
                JudgeRequest(photo, "image/jpeg", clean["start"], end, model_type=model_type)  # type: ignore[arg-type]
            )

        ok = verdict(clean["end"])
        assert ok.passed, (name, ok.issues)
        assert ok.garment_match > 0.85 and ok.same_person > 0.9 and ok.issues == ()
        assert ok.usage.service == "keyframe_check" and ok.usage.billed is False

        recolour_photo = _png(recolour(Image.open(io.BytesIO(photo))))
        recoloured = verdict(_frames(recolour_photo, model_type=model_type)["end"])
        assert not recoloured.passed and recoloured.failed_frames == ("end",), name
        assert any("end frame: garment colour differs" in i for i in recoloured.issues)

        swapped = verdict(_frames(other, model_type=model_type)["end"])
        assert not swapped.passed and swapped.failed_frames == ("end",), name
        assert any("end frame: garment" in i for i in swapped.issues), swapped.issues

        if name in ("demo-dress", "demo-hoodie"):
            # Same colours, print upside down: only the structural measure can see it.
            flipped_photo = _png(ImageOps.flip(Image.open(io.BytesIO(photo))))
            flipped = verdict(_frames(flipped_photo, model_type=model_type)["end"])
            assert not flipped.passed, name
            assert any("pattern or shape" in i for i in flipped.issues), flipped.issues

        other_person = verdict(_frames(photo, model_type=model_type, seed=12345)["end"])
        assert not other_person.passed and any("different people" in i for i in other_person.issues)


def test_offline_judge_refuses_an_unreadable_frame(photos: dict[str, bytes]) -> None:
    from catwalk.errors import PermanentProviderError

    photo = photos[min(photos)]
    with pytest.raises(PermanentProviderError, match="end keyframe is not a readable image"):
        OfflineKeyframeJudge().judge(
            JudgeRequest(photo, "image/jpeg", _frames(photo)["start"], b"not an image")
        )


class CountingVideo:
    """Counts video submits (a job failing the check must make none)."""

    name = "offline"

    def __init__(self) -> None:
        self.inner = factory.video_generator()
        self.calls = 0

    def animate(self, request, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.animate(request, **kwargs)


class CountingImages:
    name = "offline"

    def __init__(self) -> None:
        self.inner = factory.image_generator()
        self.requests: list[ImageRequest] = []

    def generate(self, request: ImageRequest):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return self.inner.generate(request)


def _ledger(job_id: str) -> list[LedgerEntry]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(LedgerEntry).where(LedgerEntry.job_id == job_id).order_by(LedgerEntry.id)
            )
        )


def _run(monkeypatch: pytest.MonkeyPatch, **env: str):  # type: ignore[no-untyped-def]
    reset_settings(monkeypatch, **env)
    factory._fault_plan.cache_clear()
    seed_demo_catalog()
    images, video = CountingImages(), CountingVideo()
    with factory.override(image=images, video=video):
        job = run_job_inline("demo-tee")
    return job, images, video


pytestmark_flow = pytest.mark.usefixtures("prefect_server")


@pytestmark_flow
def test_a_matching_pair_passes_with_one_judge_call_and_one_video(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, images, video = _run(monkeypatch, KEYFRAME_CHECK="enforce")
    assert job.status is JobStatus.COMPLETED, job.error_message
    assert len(images.requests) == 2 and video.calls == 1
    quality = job.quality
    assert quality["mode"] == "enforce" and quality["judge"] == "offline"
    assert quality["verdict"] == "pass" and len(quality["verdicts"]) == 1
    assert quality["regenerations"] == 0 and quality["issues"] == []
    judged = [r for r in _ledger(job.id) if r.service == "keyframe_check"]
    assert len(judged) == 1 and judged[0].operation == "judge_keyframes" and judged[0].amount == 0


@pytestmark_flow
def test_a_mismatched_end_frame_is_remade_once_then_passes(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, images, video = _run(
        monkeypatch, KEYFRAME_CHECK="enforce", OFFLINE_FAIL_STEPS="keyframe-mismatch:1"
    )
    assert job.status is JobStatus.COMPLETED, job.error_message
    assert [r.pose for r in images.requests] == ["start", "end", "end"]
    # The judge's issues went into the remade frame's prompt.
    assert any("garment colour differs" in f for f in images.requests[2].feedback)
    assert video.calls == 1
    quality = job.quality
    assert [v["verdict"] for v in quality["verdicts"]] == ["fail", "pass"]
    assert quality["verdicts"][0]["failedFrames"] == ["end"]
    assert quality["regenerations"] == 1 and quality["rounds"] == 1
    rows = _ledger(job.id)
    assert [r.service for r in rows].count("keyframe_check") == 2
    assert [r.service for r in rows].count("nano_banana") == 3
    remade = [r for r in rows if "remade after the keyframe check" in (r.note or "")]
    assert len(remade) == 1
    # The video step got the remade end frame (the one the second verdict passed).
    assert job.image_request_ids["end"] == remade[0].provider_request_id
    assert quality["verdicts"][1]["frames"]["end"] == remade[0].provider_request_id


@pytestmark_flow
def test_a_frame_that_never_passes_fails_the_job_and_buys_no_video(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, images, video = _run(
        monkeypatch,
        KEYFRAME_CHECK="enforce",
        KEYFRAME_CHECK_RETRIES="2",
        OFFLINE_FAIL_STEPS="keyframe-mismatch",
    )
    assert job.status is JobStatus.FAILED
    assert video.calls == 0 and job.video_request_id is None
    assert job.error_message is not None
    assert "keyframes failed the check after 2 regenerations" in job.error_message
    assert "end frame: garment colour differs from the product photo" in job.error_message
    assert [r.pose for r in images.requests] == ["start", "end", "end", "end"]
    quality = job.quality
    assert [v["verdict"] for v in quality["verdicts"]] == ["fail", "fail", "fail"]
    assert quality["regenerations"] == 2 and quality["verdict"] == "fail"
    assert [r.service for r in _ledger(job.id)].count("pika") == 0


@pytestmark_flow
def test_warn_mode_records_the_failed_verdict_and_goes_on(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offline the default mode is warn.
    job, images, video = _run(monkeypatch, OFFLINE_FAIL_STEPS="keyframe-mismatch")
    assert job.status is JobStatus.COMPLETED, job.error_message
    assert job.quality["mode"] == "warn" and job.quality["verdict"] == "fail"
    assert len(images.requests) == 2 and video.calls == 1
    assert any("KEYFRAME_CHECK=warn" in e.message for e in load_job(job.id).events)


@pytestmark_flow
def test_off_mode_skips_the_check(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, _, video = _run(monkeypatch, KEYFRAME_CHECK="off", OFFLINE_FAIL_STEPS="keyframe-mismatch")
    assert job.status is JobStatus.COMPLETED and job.quality == {} and video.calls == 1
    assert [r.service for r in _ledger(job.id)].count("keyframe_check") == 0


PRICES = """
[[price]]
provider = "offline"
model = "offline-composer"
unit = "output_token"
unit_price = "0.00003"
price_date = "2026-01-01"

[[price]]
provider = "offline"
model = "offline-xfade"
unit = "second"
unit_price = "0.04"
minimum_units = "5"
price_date = "2026-01-01"
"""


@pytestmark_flow
def test_the_ledger_and_job_totals_include_every_check_call_and_the_worst_case_is_reserved(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    job, _, _ = _run(
        monkeypatch,
        CATWALK_PRICES_FILE=str(prices),
        KEYFRAME_CHECK="enforce",
        OFFLINE_FAIL_STEPS="keyframe-mismatch:1",
    )
    assert job.status is JobStatus.COMPLETED, job.error_message
    image = Decimal("0.0387")  # 1290 tokens at $30/1M
    # Reserved up front: 2 frames + 2 regenerations of both + the video (the judge is free).
    assert job.estimated_cost == 6 * image + Decimal("0.20")
    rows = _ledger(job.id)
    assert job.total_cost == sum(r.amount for r in rows) == 3 * image + Decimal("0.20")
    assert job.nano_banana_cost == 3 * image
    assert Decimal(job.quality["regenerationCost"]) == image
    assert Decimal(job.quality["checkCost"]) == 0
    s = config.get_settings()
    assert pricing.estimate_job_cost(s) == job.estimated_cost
