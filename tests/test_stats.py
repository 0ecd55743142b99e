"""Statistics: the original contract plus delivered-video cost, failed spend, spend by model
and resolution, for a date range in the limits' time zone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from catwalk.db import queries, session_scope
from catwalk.db.models import VideoJob
from catwalk.db.stats import compute_stats

from catwalk import config
from catwalk.domain import JobOptions, JobStatus, Usage
from tests.conftest import reset_settings

# Both databases: statistics read the hourly rollup with dialect-specific SQL.
pytestmark = pytest.mark.both_dbs

UTC = dt.UTC


def _job(session, product_id: str, status: JobStatus, created: dt.datetime) -> str:  # type: ignore[no-untyped-def]
    queries.upsert_product(
        session=session, product_id=product_id, name=product_id, images=["x.jpg"]
    )
    job, _ = queries.create_job(session=session, product_id=product_id, options=JobOptions())
    job.status = status
    job.created_at = created
    return job.id


def _row(
    session,
    job_id: str | None,
    service: str,
    amount: str,
    at: dt.datetime,
    *,
    ok: bool = True,  # type: ignore[no-untyped-def]
    model: str = "m",
    resolution: str | None = None,
) -> None:
    usage = Usage(
        service,
        "fal" if service == "pika" else "gemini",
        "op",
        model,
        Decimal(1),
        "unit",
        resolution=resolution,
    )
    queries.record_usage(
        session=session,
        job_id=job_id,
        usage=usage,
        unit_price=Decimal(amount),
        amount=Decimal(amount),
        price_date=dt.date(2026, 3, 1),
        succeeded=ok,
        at=at,
    )


@pytest.fixture
def seeded(settings: config.Settings) -> config.Settings:
    d1 = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)
    d2 = dt.datetime(2026, 11, 22, 9, tzinfo=UTC)
    late = dt.datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # Nov 23 in Paris
    with session_scope(settings) as session:
        done = _job(session, "a", JobStatus.COMPLETED, d1)
        _row(session, done, "nano_banana", "0.039", d1, model="gemini-2.5-flash-image")
        _row(session, done, "nano_banana", "0.039", d1, model="gemini-2.5-flash-image")
        _row(session, done, "pika", "0.050", d1, ok=False, model="pikaframes", resolution="720p")
        _row(session, done, "pika", "0.200", d1, model="pikaframes", resolution="720p")
        failed = _job(session, "b", JobStatus.FAILED, d2)
        _row(session, failed, "nano_banana", "0.134", d2, model="gemini-3-pro-image-preview")
        _row(
            session, failed, "pika", "0.300", late, ok=False, model="pikaframes", resolution="1080p"
        )
        queries.refresh_job_costs(session=session, job_id=failed)
        session.flush()
        _job(session, "c", JobStatus.COMPLETED, d2)
    return settings


def test_the_original_contract_and_the_extra_figures(seeded: config.Settings) -> None:
    with session_scope(seeded) as session:
        stats = compute_stats(session=session, settings=seeded)
    assert stats["totalJobs"] == 3
    assert stats["completedJobs"] == 2
    assert stats["failedJobs"] == 1
    assert stats["totalCost"] == pytest.approx(0.762)
    assert stats["costByService"] == {
        "nanoBanana": pytest.approx(0.212),
        "pikaLabs": pytest.approx(0.55),
    }
    assert stats["costByDate"] == [
        {"date": "2026-11-20", "cost": pytest.approx(0.328)},
        {"date": "2026-11-21", "cost": 0.0},
        {"date": "2026-11-22", "cost": pytest.approx(0.434)},
    ]
    assert stats["failedAttemptSpend"] == pytest.approx(0.35)
    assert stats["failedJobSpend"] == pytest.approx(0.434)
    assert stats["costPerDeliveredVideo"] == pytest.approx(0.381)
    assert stats["calls"] == 6 and stats["failedCalls"] == 2
    top = stats["spendByModel"][0]
    assert top == {
        "service": "pika",
        "provider": "fal",
        "model": "pikaframes",
        "cost": pytest.approx(0.55),
        "calls": 3,
    }
    by_res = {(r["service"], r["resolution"]): r["cost"] for r in stats["spendByResolution"]}
    assert by_res == {
        ("pika", "1080p"): pytest.approx(0.3),
        ("pika", "720p"): pytest.approx(0.25),
        ("nano_banana", "-"): pytest.approx(0.212),
    }
    assert stats["today"]["timezone"] == "UTC"
    assert stats["today"]["generationLimit"] == 100


def test_a_date_range_in_the_limits_time_zone(
    seeded: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = reset_settings(monkeypatch, LIMITS_TIMEZONE="Europe/Paris")
    with session_scope(settings) as session:
        stats = compute_stats(
            session=session,
            settings=settings,
            date_from=dt.date(2026, 11, 21),
            date_to=dt.date(2026, 11, 23),
        )
    # 23:30 UTC on Nov 22 is Nov 23 in Paris.
    assert stats["costByDate"] == [
        {"date": "2026-11-21", "cost": 0.0},
        {"date": "2026-11-22", "cost": pytest.approx(0.134)},
        {"date": "2026-11-23", "cost": pytest.approx(0.3)},
    ]
    assert stats["totalJobs"] == 2
    assert stats["completedJobs"] == 1
    assert stats["range"] == {"from": "2026-11-21", "to": "2026-11-23", "timezone": "Europe/Paris"}
    assert stats["today"]["timezone"] == "Europe/Paris"


def test_an_empty_database_gives_zeros(settings: config.Settings) -> None:
    with session_scope(settings) as session:
        stats = compute_stats(session=session, settings=settings)
        assert session.query(VideoJob).count() == 0
    assert stats["totalJobs"] == 0 and stats["totalCost"] == 0
    assert stats["costByDate"] == [] and stats["costPerDeliveredVideo"] is None
    assert stats["costByService"] == {"nanoBanana": 0.0, "pikaLabs": 0.0}


def test_the_hourly_rollup_agrees_with_the_ledger(seeded: config.Settings) -> None:
    from catwalk.db.models import LedgerEntry, LedgerHour
    from catwalk.db.stats import rebuild_hourly_rollup
    from sqlalchemy import func, select

    with session_scope(seeded) as session:
        before = compute_stats(session=session, settings=seeded)
        kept = session.execute(
            select(func.sum(LedgerHour.amount), func.sum(LedgerHour.calls))
        ).one()
        truth = session.execute(
            select(func.sum(LedgerEntry.amount), func.count(LedgerEntry.id))
        ).one()
        assert kept == truth
        assert rebuild_hourly_rollup(session=session) == 5  # 6 calls, two in one hour and kind
    with session_scope(seeded) as session:
        after = compute_stats(session=session, settings=seeded)
    assert after == before


def test_a_half_hour_time_zone_is_exact_at_every_midnight(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = reset_settings(monkeypatch, LIMITS_TIMEZONE="Asia/Kolkata")  # UTC+05:30
    calls = [
        ("0.1", dt.datetime(2026, 11, 22, 18, 15, tzinfo=UTC)),  # 23:45 Nov 22 local
        ("0.2", dt.datetime(2026, 11, 22, 18, 45, tzinfo=UTC)),  # 00:15 Nov 23: same UTC hour
        ("0.4", dt.datetime(2026, 11, 23, 10, 0, tzinfo=UTC)),  # 15:30 Nov 23: an ordinary hour
        ("0.8", dt.datetime(2026, 11, 23, 18, 20, tzinfo=UTC)),  # 23:50 Nov 23
        ("1.6", dt.datetime(2026, 11, 23, 18, 40, tzinfo=UTC)),  # 00:10 Nov 24
    ]
    with session_scope(settings) as session:
        for amount, at in calls:
            _row(session, None, "pika", amount, at)
    with session_scope(settings) as session:
        everything = compute_stats(session=session, settings=settings)
        one_day = compute_stats(
            session=session,
            settings=settings,
            date_from=dt.date(2026, 11, 23),
            date_to=dt.date(2026, 11, 23),
        )
    assert everything["costByDate"] == [
        {"date": "2026-11-22", "cost": pytest.approx(0.1)},
        {"date": "2026-11-23", "cost": pytest.approx(1.4)},
        {"date": "2026-11-24", "cost": pytest.approx(1.6)},
    ]
    assert everything["calls"] == 5
    assert one_day["costByDate"] == [{"date": "2026-11-23", "cost": pytest.approx(1.4)}]
    assert one_day["totalCost"] == pytest.approx(1.4) and one_day["calls"] == 3


def test_catwalk_stats_prints_the_contract_as_json(seeded: config.Settings) -> None:
    import json

    from typer.testing import CliRunner

    from catwalk.cli.app import app

    result = CliRunner().invoke(
        app, ["stats", "--from", "2026-11-20", "--to", "2026-11-22", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["totalJobs"] == 3 and payload["totalCost"] == pytest.approx(0.762)
    assert [d["date"] for d in payload["costByDate"]] == ["2026-11-20", "2026-11-21", "2026-11-22"]

    table = CliRunner().invoke(app, ["stats"])
    assert table.exit_code == 0
    assert "per delivered video" in table.output and "of 100 videos" in table.output


def test_catwalk_stats_refuses_a_bad_date_in_one_line(seeded: config.Settings) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "catwalk.cli", "stats", "--from", "2026-02-30"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "error: --from must be a date like 2026-11-26, not '2026-02-30'"
