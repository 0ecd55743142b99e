"""The video step's deadline guards the work, not the wall clock since the job first
started (issue #13): a resumed run gets its own time limit, bounded by the job's lifetime."""

from __future__ import annotations

import datetime as dt
import time

from catwalk.db.base import utcnow
from catwalk.tasks.video import _deadline


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


def test_a_first_run_ends_a_margin_before_the_job_timeout() -> None:
    started = utcnow() - dt.timedelta(seconds=100)
    assert 465 < _left(_deadline(started, 600, max_lifetime_s=1800)) <= 470


def test_a_resumed_run_gets_its_own_time_limit_not_one_second() -> None:
    # The job started 13 minutes ago (past its 600 s timeout); the worker died and this
    # run started just now. Before issue #13 it got 1 s and cancelled its saved request.
    started = utcnow() - dt.timedelta(minutes=13)
    old = _deadline(started, 600)
    assert _left(old) <= 1.0
    resumed = _deadline(started, 600, run_started_at=utcnow(), max_lifetime_s=1800)
    assert 565 < _left(resumed) <= 570


def test_the_job_lifetime_bounds_every_resumed_run() -> None:
    started = utcnow() - dt.timedelta(seconds=1700)
    resumed = _deadline(started, 600, run_started_at=utcnow(), max_lifetime_s=1800)
    assert 65 < _left(resumed) <= 70  # 1800 - 30 s margin - 1700 elapsed


def test_a_run_that_started_before_the_job_does_not_extend_it() -> None:
    started = utcnow() - dt.timedelta(seconds=10)
    early = _deadline(started, 600, run_started_at=started - dt.timedelta(seconds=50))
    assert 555 < _left(early) <= 560
