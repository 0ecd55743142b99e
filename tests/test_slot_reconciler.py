"""Provider slots cannot leak (issue #13): the book of held slots and its reconciler, on a
real Prefect server (test harness) and catwalk's database."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from catwalk.db import session_scope
from catwalk.db import slots as slot_rows
from catwalk.tasks.slots import DatabaseSlotBook, reconcile_slots
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.concurrency._sync import acquire_concurrency_slots_with_lease

from catwalk.clients.limits import VIDEO_LIMIT, _may_have_leaked, provider_slot


def _active() -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(VIDEO_LIMIT).active_slots


def _set_active(n: int) -> None:
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(
            VIDEO_LIMIT, GlobalConcurrencyLimitUpdate(active_slots=n)
        )


@pytest.fixture
def video_limit(prefect_server, settings):
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(VIDEO_LIMIT, 5)
    _set_active(0)
    yield
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(VIDEO_LIMIT)


def _rows() -> list[tuple[str | None, str | None, bool]]:
    with session_scope() as session:
        return [
            (r.job_id, r.lease_id, r.release_pending)
            for r in slot_rows.list_holders(session=session)
        ]


def test_leaked_slots_are_given_back_and_a_live_holder_keeps_its_own(video_limit) -> None:
    _set_active(3)  # three increments whose leases were never created (Redis was down)
    with provider_slot("video", book=DatabaseSlotBook(None)):
        assert _active() == 4
        [(job, lease, pending)] = _rows()
        assert job is None and lease is not None and not pending
        report = reconcile_slots(settle_seconds=0.1)
        assert report["corrected"] == {VIDEO_LIMIT: "4 -> 1"}
        assert _active() == 1  # the live holder's slot is not taken from it
    assert _active() == 0 and _rows() == []  # released normally: row gone, count right


def test_a_dead_holders_lease_is_released_and_its_row_dropped(video_limit) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    lease = acquire_concurrency_slots_with_lease([VIDEO_LIMIT], 1, lease_duration=60).lease_id
    with session_scope() as session:
        token = slot_rows.open_holder(
            session=session,
            limit_name=VIDEO_LIMIT,
            job_id=None,
            flow_run_id=None,
            hostname=os.uname().nodename,
            pid=dead.pid,
        )
        slot_rows.mark_granted(session=session, holder_id=token, lease_id=str(lease))
    assert _active() == 1
    report = reconcile_slots(settle_seconds=0.1)
    assert report["released"] == 1 and report["dropped"] == 1
    assert _active() == 0 and _rows() == []


def test_a_failed_release_is_retried_and_a_lost_lease_is_not_double_counted(video_limit) -> None:
    """Redis lost its data: the lease is gone, the slot still counted. The holder closed with
    ``released=False``; the reconciler drops the row and sets the count to the truth."""
    book = DatabaseSlotBook("job-x")
    token = book.opening(VIDEO_LIMIT)
    assert token is not None
    book.granted(token, uuid.uuid4())  # a lease id the server never had (lost with Redis)
    _set_active(1)
    book.closed(token, released=False)
    assert _rows() == [("job-x", _rows()[0][1], True)]
    reconcile_slots(settle_seconds=0.1)
    assert _active() == 0 and _rows() == []


def test_only_a_server_error_counts_as_a_possible_leak() -> None:
    import httpx

    request = httpx.Request("POST", "http://x/api/v2/concurrency_limits/increment-with-lease")

    def status_error(code: int) -> Exception:
        inner = httpx.HTTPStatusError("x", request=request, response=httpx.Response(code))
        try:
            raise RuntimeError("acquisition failed") from inner
        except RuntimeError as exc:
            return exc

    assert _may_have_leaked(status_error(500))
    assert not _may_have_leaked(status_error(423))
    assert not _may_have_leaked(httpx.ConnectError("refused", request=request))
