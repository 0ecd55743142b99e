"""End to end through the Prefect flow: the ledger and the job's totals agree after retries
and failures, the day's reservation is reconciled to the actual cost, and a job failing for
good raises one alert."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from catwalk.db import limits, queries, session_scope
from catwalk.db.models import Alert, LedgerEntry, UsageDay
from catwalk.db.stats import compute_stats
from sqlalchemy import func, select

from catwalk import config
from catwalk.catalog import write_demo_photos
from catwalk.clients import factory
from catwalk.clients.offline import OfflineVideoGenerator
from catwalk.domain import GeneratedVideo, JobStatus, Usage, VideoRequest
from catwalk.errors import TransientProviderError
from catwalk.submission import submit_job
from tests.conftest import reset_settings

# Both databases: the ledger's hourly rollup is an upsert written per dialect.
pytestmark = pytest.mark.both_dbs

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
IMAGE = Decimal("0.0387")  # 1290 tokens
VIDEO = Decimal("0.20")  # 5 s minimum at $0.04


class _NoLaunch:
    def launch(self, **_: Any) -> None:
        return None


class BilledFailureThenOffline:
    """A video provider whose first call fails after being billed (as a provider may do)."""

    name = "offline"

    def __init__(self, inner: OfflineVideoGenerator) -> None:
        self._inner = inner
        self.calls = 0

    def animate(self, request: VideoRequest, **kwargs: Any) -> GeneratedVideo:
        self.calls += 1
        if self.calls == 1:
            usage = Usage(
                "pika",
                "offline",
                "animate",
                "offline-xfade",
                Decimal(5),
                "second",
                resolution=request.resolution,
                request_id="billed-then-failed",
            )
            raise TransientProviderError(
                "provider timed out after rendering", provider="offline", usage=usage
            )
        return self._inner.animate(request, **kwargs)


@pytest.fixture
def priced(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> config.Settings:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    factory._fault_plan.cache_clear()  # fault counters start afresh for each test
    return reset_settings(monkeypatch, CATWALK_PRICES_FILE=str(prices))


def _product(settings: config.Settings) -> str:
    photo = next(iter(write_demo_photos(settings.catwalk_home / "photos").values()))
    with session_scope(settings) as session:
        queries.upsert_product(session=session, product_id="tee", name="Tee", images=[str(photo)])
    return "tee"


def _run(settings: config.Settings) -> str:
    from catwalk.flows.generate_product_video import generate_product_video

    pid = _product(settings)
    job_id = submit_job(pid, {}, settings=settings, launcher=_NoLaunch()).job_id
    generate_product_video(pid, None, job_id, return_state=True)
    return job_id


def _ledger_totals(settings: config.Settings, job_id: str) -> dict[str, Decimal]:
    with session_scope(settings) as session:
        rows = session.execute(
            select(LedgerEntry.service, func.sum(LedgerEntry.amount))
            .where(LedgerEntry.job_id == job_id)
            .group_by(LedgerEntry.service)
        ).all()
    return {service: Decimal(total) for service, total in rows}


def _usage_day(settings: config.Settings) -> UsageDay:
    with session_scope(settings) as session:
        row = session.get(UsageDay, limits.limits_day(settings))
        assert row is not None
        return row


def test_transient_retries_keep_ledger_and_totals_in_agreement(
    priced: config.Settings, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    settings = reset_settings(monkeypatch, OFFLINE_FAIL_STEPS="video:transient:2")
    job_id = _run(settings)
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        assert job.status is JobStatus.COMPLETED, job.error_message
        assert job.retry_count == 2
        totals = _ledger_totals(settings, job_id)
        assert job.nano_banana_cost == totals["nano_banana"] == 2 * IMAGE
        assert job.pika_labs_cost == totals["pika"] == VIDEO
        assert job.total_cost == sum(totals.values())
        assert job.estimated_cost == 2 * IMAGE + VIDEO
        assert job.cost_reconciled_at is not None
        stats = compute_stats(session=session, settings=settings)
    assert stats["totalCost"] == pytest.approx(float(job.total_cost))
    usage = _usage_day(settings)
    assert usage.generations == 1
    assert usage.reserved_cost == job.total_cost


def test_a_billed_failed_attempt_is_in_the_ledger_and_the_totals(
    priced: config.Settings, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    priced = reset_settings(monkeypatch, COST_ALERT_THRESHOLD="0.3")
    flaky = BilledFailureThenOffline(factory.video_generator(priced))  # type: ignore[arg-type]
    with factory.override(video=flaky):
        job_id = _run(priced)
    with session_scope(priced) as session:
        # Spend passed $0.30 during the job (0.0774 + 0.2 + 0.2): one daily alert, not one per call.
        assert [a.kind for a in session.scalars(select(Alert))] == ["daily_cost"]
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
        pika_rows = [
            e for e in queries.ledger_for_job(session=session, job_id=job_id) if e.service == "pika"
        ]
        stats = compute_stats(session=session, settings=priced)
    assert [(e.succeeded, e.amount) for e in pika_rows] == [(False, VIDEO), (True, VIDEO)]
    assert job.pika_labs_cost == 2 * VIDEO
    assert job.total_cost == sum(_ledger_totals(priced, job_id).values())
    assert stats["failedAttemptSpend"] == pytest.approx(float(VIDEO))
    assert stats["costPerDeliveredVideo"] == pytest.approx(float(job.total_cost))
    # Reconciled: the day carries what was actually spent, more than the estimate.
    assert _usage_day(priced).reserved_cost == job.total_cost > job.estimated_cost


def test_a_job_failing_for_good_agrees_with_the_ledger_and_alerts_once(
    priced: config.Settings, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    settings = reset_settings(monkeypatch, OFFLINE_FAIL_STEPS="video")
    job_id = _run(settings)
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.total_cost == sum(_ledger_totals(settings, job_id).values()) == 2 * IMAGE
        alerts = session.scalars(select(Alert)).all()
        stats = compute_stats(session=session, settings=settings)
    assert [(a.kind, a.dedupe_key) for a in alerts] == [("job_failed", f"job_failed:{job_id}")]
    assert "injected permanent failure in video" in alerts[0].message
    assert stats["failedJobs"] == 1 and stats["failedJobSpend"] == pytest.approx(float(2 * IMAGE))
    usage = _usage_day(settings)
    assert usage.generations == 1  # it spent money, so it counts
    assert usage.reserved_cost == 2 * IMAGE


def test_a_job_that_never_reached_a_provider_costs_nothing_and_frees_its_generation(
    priced: config.Settings, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    settings = reset_settings(monkeypatch, OFFLINE_FAIL_STEPS="images")
    job_id = _run(settings)
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.total_cost == 0
    usage = _usage_day(settings)
    assert usage.generations == 0
    assert usage.reserved_cost == 0


def test_a_deployment_run_that_records_its_own_job_is_held_to_the_limit(
    priced: config.Settings, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    from catwalk.flows.generate_product_video import generate_product_video

    settings = reset_settings(monkeypatch, DAILY_GENERATION_LIMIT="1")
    pid = _product(settings)
    first = generate_product_video(pid, None, None, return_state=True)
    assert first.is_completed()
    refused = generate_product_video(pid, None, None, return_state=True)
    assert refused.is_failed()
    assert "daily limit of 1 video reached; resets at 00:00 UTC" in str(refused.message) + repr(
        refused.result(raise_on_failure=False)
    )
    with session_scope(settings) as session:
        jobs = queries.list_jobs(session=session)
    assert len(jobs) == 1 and jobs[0].status is JobStatus.COMPLETED
    assert _usage_day(settings).generations == 1
