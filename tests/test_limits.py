"""Reserve before spending: the daily limit and budget hold under concurrent submissions,
refusals say why and cost nothing, and a job's reservation is reconciled when it ends."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from catwalk.db import limits, queries, session_scope
from catwalk.db.models import JobEvent, LedgerEntry, UsageDay, VideoJob
from sqlalchemy import func, select

from catwalk import config
from catwalk.catalog import write_demo_photos
from catwalk.domain import JobStatus, Usage
from catwalk.errors import LimitExceeded
from catwalk.submission import submit_job
from tests.conftest import reset_settings

# Both databases: reservations lock the day's row (FOR UPDATE on PostgreSQL, ON CONFLICT on SQLite).
pytestmark = pytest.mark.both_dbs

PRICES = """
[[price]]
provider = "offline"
model = "*"
unit = "*"
unit_price = "0.05"
price_date = "2026-01-01"
"""


class NoLaunch:
    def __init__(self) -> None:
        self.launched: list[str] = []
        self._lock = threading.Lock()

    def launch(self, *, job_id: str, product_id: str, options: dict) -> None:
        with self._lock:
            self.launched.append(job_id)


def _products(settings: config.Settings, count: int) -> list[str]:
    photos = write_demo_photos(settings.catwalk_home / "photos")
    photo = str(next(iter(photos.values())))
    ids = [f"p{n:03d}" for n in range(count)]
    with session_scope(settings) as session:
        for pid in ids:
            queries.upsert_product(session=session, product_id=pid, name=pid, images=[photo])
    return ids


def _count(model: type, settings: config.Settings) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _usage(settings: config.Settings) -> UsageDay:
    with session_scope(settings) as session:
        row = session.get(UsageDay, limits.limits_day(settings))
        assert row is not None
        return row


def _parallel_submit(
    settings: config.Settings, product_ids: list[str]
) -> tuple[list[str], list[LimitExceeded]]:
    launcher = NoLaunch()
    accepted: list[str] = []
    refused: list[LimitExceeded] = []
    unexpected: list[BaseException] = []
    barrier = threading.Barrier(len(product_ids))
    lock = threading.Lock()

    def one(pid: str) -> None:
        barrier.wait()
        try:
            sub = submit_job(pid, {}, settings=settings, launcher=launcher)
        except LimitExceeded as exc:
            with lock:
                refused.append(exc)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            with lock:
                unexpected.append(exc)
        else:
            with lock:
                accepted.append(sub.job_id)

    threads = [threading.Thread(target=one, args=(pid,)) for pid in product_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not unexpected, unexpected
    assert sorted(launcher.launched) == sorted(set(accepted))
    return accepted, refused


def test_fifty_parallel_submissions_never_overshoot_the_limit(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = reset_settings(monkeypatch, DAILY_GENERATION_LIMIT="10")
    ids = _products(settings, 50)

    accepted, refused = _parallel_submit(settings, ids)

    assert len(accepted) == 10
    assert len(refused) == 40
    assert _count(VideoJob, settings) == 10
    assert _usage(settings).generations == 10
    # A refusal records nothing: no job, no event, no ledger row.
    assert _count(JobEvent, settings) == 10
    assert _count(LedgerEntry, settings) == 0
    assert all("daily limit of 10 videos reached; resets at 00:00 UTC" == str(e) for e in refused)
    assert all(0 < e.retry_after_seconds <= 24 * 3600 for e in refused)


def test_parallel_submissions_respect_the_daily_budget(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    # Offline job at $0.05 per unit: 2 images + 2 s of video = $0.20 estimated.
    settings = reset_settings(
        monkeypatch,
        CATWALK_PRICES_FILE=str(prices),
        DAILY_BUDGET="1.00",
        DAILY_GENERATION_LIMIT="100",
    )
    ids = _products(settings, 20)

    accepted, refused = _parallel_submit(settings, ids)

    assert len(accepted) == 5
    usage = _usage(settings)
    assert usage.generations == 5
    assert usage.reserved_cost == Decimal("1.00")
    assert refused and str(refused[0]).startswith(
        "daily budget of $1.00 reached ($1.00 spent or reserved"
    )
    assert "a video needs about $0.20" in str(refused[0])


def test_resubmitting_a_product_in_flight_uses_no_generation(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = reset_settings(monkeypatch, DAILY_GENERATION_LIMIT="1")
    (pid,) = _products(settings, 1)
    first = submit_job(pid, {}, settings=settings, launcher=NoLaunch())
    again = submit_job(pid, {}, settings=settings, launcher=NoLaunch())
    assert again.job_id == first.job_id and not again.created
    assert _usage(settings).generations == 1


def test_same_product_raced_by_many_submissions_uses_one_generation(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = reset_settings(monkeypatch, DAILY_GENERATION_LIMIT="5")
    (pid,) = _products(settings, 1)
    accepted, refused = _parallel_submit(settings, [pid] * 12)
    assert not refused
    assert len(set(accepted)) == 1
    assert _usage(settings).generations == 1


def test_the_limit_day_and_reset_follow_the_configured_time_zone(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = reset_settings(monkeypatch, DAILY_GENERATION_LIMIT="0", LIMITS_TIMEZONE="Asia/Tokyo")
    # 20:00 UTC on Nov 26 is 05:00 on Nov 27 in Tokyo: the Tokyo day ends in 19 hours.
    now = dt.datetime(2026, 11, 26, 20, 0, tzinfo=dt.UTC)
    assert limits.limits_day(settings, now) == dt.date(2026, 11, 27)
    with pytest.raises(LimitExceeded) as refused, session_scope(settings) as session:
        limits.reserve_generation(
            session=session, settings=settings, estimated_cost=Decimal(0), now=now
        )
    assert str(refused.value) == "daily limit of 0 videos reached; resets at 00:00 Asia/Tokyo"
    assert refused.value.retry_after_seconds == 19 * 3600


def test_reconcile_swaps_the_estimate_for_the_ledger_cost_once(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    settings = reset_settings(monkeypatch, CATWALK_PRICES_FILE=str(prices))
    (pid,) = _products(settings, 1)
    sub = submit_job(pid, {}, settings=settings, launcher=NoLaunch())
    assert _usage(settings).reserved_cost == Decimal("0.20")
    usage = Usage(
        "pika", "offline", "animate", "offline-xfade", Decimal(7), "second", resolution="720p"
    )
    with session_scope(settings) as session:
        queries.record_usage(
            session=session,
            job_id=sub.job_id,
            usage=usage,
            unit_price=Decimal("0.05"),
            amount=Decimal("0.35"),
            price_date=dt.date(2026, 1, 1),
        )
        job = queries.get_job(session=session, job_id=sub.job_id)
        assert job is not None
        job.status = JobStatus.COMPLETED
    for _ in range(3):  # whoever calls it, and however often, it applies once
        with session_scope(settings) as session:
            limits.reconcile_job(session=session, job_id=sub.job_id)
    usage_row = _usage(settings)
    assert usage_row.reserved_cost == Decimal("0.35")
    assert usage_row.generations == 1


def test_a_job_that_failed_before_any_provider_call_gives_its_generation_back(
    settings: config.Settings,
) -> None:
    (pid,) = _products(settings, 1)
    sub = submit_job(pid, {}, settings=settings, launcher=NoLaunch())
    with session_scope(settings) as session:
        job = queries.get_job(session=session, job_id=sub.job_id)
        assert job is not None
        job.status = JobStatus.FAILED
        limits.reconcile_job(session=session, job_id=sub.job_id)
    assert _usage(settings).generations == 0
