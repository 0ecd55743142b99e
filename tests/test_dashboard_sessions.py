"""The dashboard's session cookie: signing, expiry, the one-time handoff, revocation, and the
route that sets and clears it. Against the real database (both backends: the handoff is an
UPDATE ... RETURNING, the revocation a row every process reads)."""

from __future__ import annotations

import datetime as dt

import pytest
from catwalk.dashboards import sessions
from catwalk.db import session_scope
from catwalk.db.base import utcnow
from catwalk.db.models import DashboardSession
from starlette.applications import Starlette
from starlette.testclient import TestClient

from catwalk.config import Settings
from tests.conftest import reset_settings

pytestmark = pytest.mark.both_dbs


def signed_in_cookie(settings: Settings, admin: str = "admin") -> tuple[str, str]:
    started = sessions.start(settings, admin)
    value, _ = sessions.exchange(settings, started.token)
    assert value
    return started.session_id, value


def test_a_traded_token_gives_a_cookie_that_signs_in(settings: Settings) -> None:
    session_id, value = signed_in_cookie(settings)
    assert session_id in value
    assert sessions.admin_of_cookie(settings, value) == "admin"


def test_the_session_lasts_dashboard_session_hours(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.dashboard_session_hours == 12
    settings = reset_settings(monkeypatch, DASHBOARD_SESSION_HOURS="2")
    now = utcnow()
    started = sessions.start(settings, "admin", now=now)
    value, expires = sessions.exchange(settings, started.token, now=now)
    assert expires == int((now + dt.timedelta(hours=2)).timestamp())
    later = now + dt.timedelta(hours=1, minutes=59)
    assert sessions.admin_of_cookie(settings, value, now=later) == "admin"
    assert sessions.admin_of_cookie(settings, value, now=now + dt.timedelta(hours=2)) is None


def test_a_token_trades_once_and_only_while_fresh(settings: Settings) -> None:
    now = utcnow()
    started = sessions.start(settings, "admin", now=now)
    assert sessions.exchange(settings, started.token, now=now)[0]
    assert sessions.exchange(settings, started.token, now=now) == ("", 0)
    stale = sessions.start(settings, "admin", now=now)
    too_late = now + dt.timedelta(seconds=sessions.HANDOFF_SECONDS + 1)
    assert sessions.exchange(settings, stale.token, now=too_late) == ("", 0)
    assert sessions.exchange(settings, "not a token") == ("", 0)
    assert sessions.exchange(settings, "") == ("", 0)


def test_a_tampered_or_forged_cookie_does_not_sign_in(settings: Settings) -> None:
    session_id, value = signed_in_cookie(settings)
    version, _, expires, sig = value.split(".")
    other_id, _ = signed_in_cookie(settings)
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    for bad in (
        f"{version}.{session_id}.{expires}.{flipped}",
        # Someone else's session under this cookie's signature.
        f"{version}.{other_id}.{expires}.{sig}",
        # A longer life under the same signature.
        f"{version}.{session_id}.{int(expires) + 3600}.{sig}",
        f"v0.{session_id}.{expires}.{sig}",
        f"{version}.{session_id}.{expires}",
        session_id,
        "",
    ):
        assert sessions.admin_of_cookie(settings, bad) is None, bad
    assert sessions.admin_of_cookie(settings, value) == "admin"


def test_an_expired_cookie_does_not_sign_in_even_if_its_row_lives(settings: Settings) -> None:
    session_id, _ = signed_in_cookie(settings)
    past = int(utcnow().timestamp()) - 1
    # Correctly signed, but its own expiry has passed.
    assert (
        sessions.admin_of_cookie(settings, sessions.cookie_value(settings, session_id, past))
        is None
    )
    future = int(utcnow().timestamp()) + 3600
    assert sessions.admin_of_cookie(settings, sessions.cookie_value(settings, session_id, future))


def test_a_cookie_outliving_its_row_does_not_sign_in(settings: Settings) -> None:
    session_id, value = signed_in_cookie(settings)
    with session_scope(settings) as session:
        row = session.get(DashboardSession, session_id)
        assert row is not None
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
    assert sessions.admin_of_cookie(settings, value) is None


def test_sign_out_revokes_the_cookie_and_only_that_one(settings: Settings) -> None:
    session_id, value = signed_in_cookie(settings)
    _, other = signed_in_cookie(settings, "boss@shop.com")
    sessions.revoke(settings, session_id)
    assert sessions.admin_of_cookie(settings, value) is None
    assert sessions.admin_of_cookie(settings, other) == "boss@shop.com"


def test_a_revoked_session_cannot_trade_its_token(settings: Settings) -> None:
    started = sessions.start(settings, "admin")
    sessions.revoke(settings, started.session_id)
    assert sessions.exchange(settings, started.token) == ("", 0)


def test_a_cookie_signed_under_another_secret_does_not_sign_in(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, made_with_key_file = signed_in_cookie(settings)
    assert (settings.catwalk_home / sessions.KEY_FILE).stat().st_mode & 0o777 == 0o600
    env_secret = reset_settings(monkeypatch, DASHBOARD_SESSION_SECRET="s" * 40)
    assert sessions.admin_of_cookie(env_secret, made_with_key_file) is None
    _, made_with_env = signed_in_cookie(env_secret)
    assert sessions.admin_of_cookie(env_secret, made_with_env) == "admin"
    short = reset_settings(monkeypatch, DASHBOARD_SESSION_SECRET="short")
    with pytest.raises(Exception, match="too short"):
        sessions.admin_of_cookie(short, made_with_env)


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return TestClient(Starlette(routes=sessions.routes()), base_url="http://dash.test")


def test_the_route_sets_an_httponly_cookie_once_per_token(
    settings: Settings, client: TestClient
) -> None:
    started = sessions.start(settings, "admin")
    answer = client.post("/catwalk-session/start", content=started.token)
    assert answer.status_code == 204
    header = answer.headers["set-cookie"]
    assert header.startswith(f"{sessions.COOKIE}=v1.{started.session_id}.")
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "samesite=lax" in header.lower()
    max_age = int(header.lower().split("max-age=")[1].split(";")[0])
    assert 12 * 3600 - 60 <= max_age <= 12 * 3600
    value = client.cookies[sessions.COOKIE]
    assert sessions.admin_of_cookie(settings, value) == "admin"
    again = client.post("/catwalk-session/start", content=started.token)
    assert again.status_code == 403
    assert "set-cookie" not in again.headers


def test_the_end_route_revokes_and_clears_the_cookie(
    settings: Settings, client: TestClient
) -> None:
    started = sessions.start(settings, "admin")
    client.post("/catwalk-session/start", content=started.token)
    value = client.cookies[sessions.COOKIE]
    answer = client.post("/catwalk-session/end")
    assert answer.status_code == 204
    assert "max-age=0" in answer.headers["set-cookie"].lower()
    assert sessions.admin_of_cookie(settings, value) is None
    assert sessions.COOKIE not in client.cookies


def test_revoke_all_signs_everyone_out(settings: Settings) -> None:
    _, first = signed_in_cookie(settings)
    _, second = signed_in_cookie(settings, "boss@shop.com")
    sessions.revoke_all(settings)
    assert sessions.admin_of_cookie(settings, first) is None
    assert sessions.admin_of_cookie(settings, second) is None
    _, after = signed_in_cookie(settings)
    assert sessions.admin_of_cookie(settings, after) == "admin"
