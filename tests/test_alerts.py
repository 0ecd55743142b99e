"""Alerts: one row per crossing however many recorders race, delivered once to a real
local HTTP server, delivery errors kept for a later retry, the webhook URL never shown."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from catwalk.db import alerts, queries, session_scope
from catwalk.db.models import Alert
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from catwalk import config
from catwalk.alerting import alert_job_failed, check_spend_alerts, deliver_pending_alerts
from catwalk.domain import Usage
from tests.conftest import reset_settings

# Both databases: alerts are claimed and recorded with INSERT ... ON CONFLICT on each dialect.
pytestmark = pytest.mark.both_dbs

HOOK = "/services/T000/B000/secret-token-xyz"


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)


def _spend(settings: config.Settings, amount: str, *, at: dt.datetime | None = None) -> None:
    usage = Usage(
        "pika",
        "fal",
        "animate",
        "fal-ai/pika/v2.2/pikaframes",
        Decimal(5),
        "second",
        resolution="720p",
    )
    with session_scope(settings) as session:
        queries.record_usage(
            session=session,
            job_id=None,
            usage=usage,
            unit_price=Decimal("0.04"),
            amount=Decimal(amount),
            price_date=dt.date(2026, 3, 1),
            at=at,
        )


def _alerts(settings: config.Settings) -> list[Alert]:
    with session_scope(settings) as session:
        return list(session.scalars(select(Alert).order_by(Alert.created_at)))


def _race(fn: Callable[[], object], n: int = 16) -> None:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_a_daily_crossing_is_recorded_once_and_delivered_once(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_json({"ok": True})
    settings = reset_settings(
        monkeypatch, COST_ALERT_THRESHOLD="10", ALERT_WEBHOOK_URL=httpserver.url_for(HOOK)
    )
    _spend(settings, "9.50")
    check_spend_alerts(settings=settings)
    assert _alerts(settings) == []  # under the threshold: nothing

    _spend(settings, "0.75")
    _race(lambda: check_spend_alerts(settings=settings))

    (alert,) = _alerts(settings)
    assert alert.kind == "daily_cost"
    assert alert.dedupe_key.startswith("daily_cost:")
    assert alert.delivered_at is not None and alert.delivery_error is None
    assert len(httpserver.log) == 1
    request, _ = httpserver.log[0]
    assert request.json == {"text": alert.message}
    assert "passed $10.00: $10.25 so far" in alert.message
    assert "(UTC)" in alert.message


def test_monthly_threshold_alerts_once_per_month(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = reset_settings(
        monkeypatch, COST_ALERT_THRESHOLD="1000", MONTHLY_COST_ALERT_THRESHOLD="20"
    )
    today = dt.datetime.now(dt.UTC)
    first_of_month = today.replace(day=1, hour=0, minute=30, second=0, microsecond=0)
    last_month = first_of_month - dt.timedelta(days=3)
    _spend(settings, "500", at=last_month)  # another month: does not count
    _spend(settings, "15", at=first_of_month)
    _spend(settings, "6")
    check_spend_alerts(settings=settings)
    check_spend_alerts(settings=settings)
    (alert,) = _alerts(settings)
    assert alert.kind == "monthly_cost"
    assert alert.dedupe_key == f"monthly_cost:{today:%Y-%m}"
    assert "$21.00 so far" in alert.message


def test_a_job_failing_for_good_alerts_once_whoever_reports_it(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_data("ok")
    settings = reset_settings(monkeypatch, ALERT_WEBHOOK_URL=httpserver.url_for(HOOK))
    _race(
        lambda: alert_job_failed(
            job_id="job123", product_id="tee", message="video: refused", settings=settings
        )
    )
    (alert,) = _alerts(settings)
    assert alert.dedupe_key == "job_failed:job123"
    assert alert.message == "video job job123 for product tee failed: video: refused"
    assert len(httpserver.log) == 1


def test_delivery_errors_are_kept_and_retried_later_without_leaking_the_url(
    settings: config.Settings,
    monkeypatch: pytest.MonkeyPatch,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    httpserver.expect_ordered_request(HOOK, method="POST").respond_with_data("down", status=503)
    httpserver.expect_ordered_request(HOOK, method="POST").respond_with_data("ok")
    settings = reset_settings(monkeypatch, ALERT_WEBHOOK_URL=httpserver.url_for(HOOK))

    alert_job_failed(job_id="j1", product_id="tee", message="images: bad key", settings=settings)
    (alert,) = _alerts(settings)
    assert alert.delivered_at is None
    assert alert.delivery_error == "alert webhook answered HTTP 503"
    assert alert.delivery_attempts == 1

    assert deliver_pending_alerts(settings=settings) == (1, 0)
    assert deliver_pending_alerts(settings=settings) == (0, 0)  # nothing left to send
    (alert,) = _alerts(settings)
    assert alert.delivered_at is not None and alert.delivery_error is None
    assert alert.delivery_attempts == 2
    assert len(httpserver.log) == 2
    # Our code and the HTTP client never log the URL (the fake server's own access log may).
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug")]
    assert ours and not [m for m in ours if "secret-token-xyz" in m]


def test_an_unreachable_webhook_is_recorded_without_the_url(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port nobody listens on: bind, note it, close.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = reset_settings(monkeypatch, ALERT_WEBHOOK_URL=f"http://127.0.0.1:{port}{HOOK}")
    alert_job_failed(job_id="j2", product_id="tee", message="x", settings=settings)
    (alert,) = _alerts(settings)
    assert alert.delivery_error == "alert webhook unreachable (ConnectError)"


def test_unacknowledged_alerts_are_listed_until_acknowledged(settings: config.Settings) -> None:
    alert_job_failed(job_id="a", product_id="p", message="m", settings=settings)
    alert_job_failed(job_id="b", product_id="p", message="m", settings=settings)
    with session_scope(settings) as session:
        shown = alerts.unacknowledged_alerts(session=session)
        assert {a.job_id for a in shown} == {"a", "b"}
        first = next(a.id for a in shown if a.job_id == "a")
        assert alerts.acknowledge_alert(session=session, alert_id=first)
        assert not alerts.acknowledge_alert(session=session, alert_id=first)
    with session_scope(settings) as session:
        assert [a.job_id for a in alerts.unacknowledged_alerts(session=session)] == ["b"]


def test_catwalk_alerts_lists_acknowledges_and_delivers(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    import json

    from typer.testing import CliRunner

    from catwalk.cli.app import app

    alert_job_failed(job_id="j9", product_id="tee", message="video: refused", settings=settings)
    listed = CliRunner().invoke(app, ["alerts", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert row["kind"] == "job_failed" and row["delivered"] is False

    httpserver.expect_request(HOOK, method="POST").respond_with_data("ok")
    reset_settings(monkeypatch, ALERT_WEBHOOK_URL=httpserver.url_for(HOOK))
    sent = CliRunner().invoke(app, ["alerts", "deliver"])
    assert sent.exit_code == 0 and "1 alert(s) delivered" in sent.output
    assert len(httpserver.log) == 1

    acked = CliRunner().invoke(app, ["alerts", "ack", row["id"][:8]])
    assert acked.exit_code == 0, acked.output
    assert json.loads(CliRunner().invoke(app, ["alerts", "--json"]).output) == []
