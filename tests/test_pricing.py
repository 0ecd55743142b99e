"""Prices: per provider, model and resolution, dated; a price change never rewrites history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from catwalk.db import queries, session_scope
from catwalk.db.stats import compute_stats
from catwalk.tasks._policy import charge

from catwalk import config, pricing
from catwalk.domain import JobOptions, Usage
from tests.conftest import reset_settings

OLD = """
[[price]]
provider = "fal"
model = "fal-ai/pika/v2.2/pikaframes"
resolution = "720p"
unit = "second"
unit_price = "0.04"
minimum_units = "5"
price_date = "2026-03-01"
"""
NEW = (
    OLD
    + """
[[price]]
provider = "fal"
model = "fal-ai/pika/v2.2/pikaframes"
resolution = "720p"
unit = "second"
unit_price = "0.05"
minimum_units = "5"
price_date = "2026-11-01"
"""
)
VIDEO = Usage(
    "pika", "fal", "animate", "fal-ai/pika/v2.2/pikaframes", Decimal(5), "second", resolution="720p"
)


def test_the_price_in_force_on_the_day_of_the_call_is_used(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(NEW)
    settings = config.Settings(CATWALK_PRICES_FILE=str(path))
    before = pricing.charge_for(VIDEO, on=dt.date(2026, 10, 31), settings=settings)
    after = pricing.charge_for(VIDEO, on=dt.date(2026, 11, 1), settings=settings)
    assert (before.unit_price, before.amount, before.price_date) == (
        Decimal("0.04"),
        Decimal("0.2"),
        dt.date(2026, 3, 1),
    )
    assert (after.unit_price, after.amount, after.price_date) == (
        Decimal("0.05"),
        Decimal("0.25"),
        dt.date(2026, 11, 1),
    )


def test_the_shipped_price_list_prices_every_supported_configuration() -> None:
    for model in (
        "gemini-2.5-flash-image",
        "gemini-3-pro-image-preview",
        "gemini-3.1-flash-image-preview",
    ):
        for resolution in ("720p", "1080p"):
            settings = config.Settings(
                IMAGE_PROVIDER="nano-banana",
                VIDEO_PROVIDER="pika",
                NANO_BANANA_MODEL=model,
                VIDEO_RESOLUTION=resolution,
                VIDEO_DURATION_SECONDS=5,
            )
            assert pricing.estimate_job_cost(settings) > 0
    # Gemini 2.5 Flash Image: 2 x 1290 tokens at $30/1M; Pika 720p: 5 s at $0.04.
    # (The keyframe check's worst case is left out here: tests/test_keyframe_judge_gemini.py.)
    default_paid = config.Settings(
        IMAGE_PROVIDER="nano-banana",
        VIDEO_PROVIDER="pika",
        VIDEO_DURATION_SECONDS=5,
        KEYFRAME_CHECK="off",
    )
    assert pricing.estimate_job_cost(default_paid) == Decimal("0.2774")
    four_k = config.Settings(
        IMAGE_PROVIDER="nano-banana",
        NANO_BANANA_MODEL="gemini-3-pro-image-preview",
        IMAGE_SIZE="4K",
        VIDEO_PROVIDER="pika",
        VIDEO_RESOLUTION="1080p",
        VIDEO_DURATION_SECONDS=5,
        KEYFRAME_CHECK="off",
    )
    assert pricing.estimate_job_cost(four_k) == Decimal("0.78")  # 2 x $0.24 + 5 s x $0.06
    assert pricing.estimate_job_cost(config.Settings()) == 0  # offline


def test_changing_a_price_never_rewrites_history(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(OLD.replace("2026-03-01", "2020-01-01"))
    settings = reset_settings(monkeypatch, CATWALK_PRICES_FILE=str(old))
    with session_scope(settings) as session:
        queries.upsert_product(session=session, product_id="p", name="p", images=["x.jpg"])
        job, _ = queries.create_job(session=session, product_id="p", options=JobOptions())
        charge(session=session, job_id=job.id, usage=VIDEO)
        job_id = job.id
    # The provider raises its price today: a new dated row, the old one stays.
    new.write_text(
        NEW.replace("2026-03-01", "2020-01-01").replace("2026-11-01", dt.date.today().isoformat())
    )
    settings = reset_settings(monkeypatch, CATWALK_PRICES_FILE=str(new))
    with session_scope(settings) as session:
        queries.refresh_job_costs(session=session, job_id=job_id)
        first = queries.ledger_for_job(session=session, job_id=job_id)
        assert [(e.unit_price, e.amount, e.price_date) for e in first] == [
            (Decimal("0.04"), Decimal("0.2"), dt.date(2020, 1, 1))
        ]
        charge(session=session, job_id=job_id, usage=VIDEO)
    with session_scope(settings) as session:
        rows = queries.ledger_for_job(session=session, job_id=job_id)
        job = queries.get_job(session=session, job_id=job_id)
        stats = compute_stats(session=session, settings=settings)
    assert [(e.unit_price, e.amount) for e in rows] == [
        (Decimal("0.04"), Decimal("0.2")),
        (Decimal("0.05"), Decimal("0.25")),
    ]
    assert job is not None and job.pika_labs_cost == job.total_cost == Decimal("0.45")
    assert stats["totalCost"] == pytest.approx(0.45)
