"""Sign-ins that survive a reload: the dashboard's signed, HttpOnly session cookie.

A password sign-in makes a ``dashboard_sessions`` row (``DASHBOARD_SESSION_HOURS`` long) and
a one-time token. A script cannot set an HttpOnly cookie, so the page hands the token to
``POST /catwalk-session/start`` (this module's route, mounted beside Streamlit's by
``dashboards/server.py``), which answers with the cookie. Every new browser session (a reload,
a link, another tab) reads it through ``st.context.cookies``.

The cookie is ``v1.<session id>.<expiry>.<HMAC-SHA256>``; it signs in only while its signature
is good, its expiry has not passed and its row is neither revoked (sign-out) nor expired. The
HMAC key comes from ``DASHBOARD_SESSION_SECRET`` or, unset, from 32 random bytes made once in
``CATWALK_HOME/dashboard-session.key`` (mode 600; deleting it signs everyone out).

Plain functions and a Starlette route: no Streamlit here, so tests drive them directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from catwalk.dashboards.media_links import install_secret
from catwalk.db import session_scope
from catwalk.db.base import utcnow
from catwalk.db.models import DashboardSession
from sqlalchemy import delete, update
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catwalk.clients import signed_media
from catwalk.config import Settings, get_settings
from catwalk.errors import ConfigError

COOKIE = "catwalk_session"
ROUTE = "/catwalk-session"
KEY_FILE = "dashboard-session.key"
#: The page trades its token within seconds; a token seen later (a log, a history) is dead.
HANDOFF_SECONDS = 120
#: Rows past their expiry are kept this long (sign-ins of the last day stay inspectable).
_KEEP_EXPIRED = dt.timedelta(days=1)
_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class Started:
    """A new sign-in: its session id (for this browser session) and the one-time token."""

    session_id: str
    token: str


def signing_key(settings: Settings) -> bytes:
    """The key the session cookie is signed with (the key file is made on first use)."""
    if settings.dashboard_session_secret is not None:
        secret = settings.dashboard_session_secret.get_secret_value().encode()
    else:
        secret = install_secret(settings.catwalk_home / KEY_FILE)
    if len(secret) < 32:
        raise ConfigError(
            "the dashboard's session secret is too short: DASHBOARD_SESSION_SECRET needs 32+ "
            f"characters, or delete {KEY_FILE} in CATWALK_HOME to make a new key"
        )
    return signed_media.derive_key(secret, b"catwalk dashboard session v1")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(settings: Settings, admin: str, *, now: dt.datetime | None = None) -> Started:
    """Record a sign-in by ``admin`` and make the token its browser trades for the cookie."""
    now = now or utcnow()
    session_id, token = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    with session_scope(settings) as session:
        session.execute(
            delete(DashboardSession).where(DashboardSession.expires_at < now - _KEEP_EXPIRED)
        )
        session.add(
            DashboardSession(
                id=session_id,
                admin=admin,
                created_at=now,
                expires_at=now + dt.timedelta(hours=settings.dashboard_session_hours),
                handoff_hash=_digest(token),
                handoff_until=now + dt.timedelta(seconds=HANDOFF_SECONDS),
            )
        )
    return Started(session_id, token)


def cookie_value(settings: Settings, session_id: str, expires: int) -> str:
    """The signed cookie naming ``session_id``, good until ``expires`` (Unix seconds)."""
    sig = signed_media.signature(signing_key(settings), _VERSION, session_id, str(expires))
    return f"{_VERSION}.{session_id}.{expires}.{sig}"


def exchange(settings: Settings, token: str, *, now: dt.datetime | None = None) -> tuple[str, int]:
    """The cookie (value, expiry) for a one-time token, or ("", 0) when it is spent or dead."""
    now = now or utcnow()
    if not token:
        return "", 0
    with session_scope(settings) as session:
        # One statement: two requests racing with the same token cannot both get a cookie.
        row = session.execute(
            update(DashboardSession)
            .where(
                DashboardSession.handoff_hash == _digest(token),
                DashboardSession.handoff_until >= now,
                DashboardSession.revoked_at.is_(None),
                DashboardSession.expires_at > now,
            )
            .values(handoff_hash=None, handoff_until=None)
            .returning(DashboardSession.id, DashboardSession.expires_at)
        ).one_or_none()
    if row is None:
        return "", 0
    expires = int(row.expires_at.timestamp())
    return cookie_value(settings, row.id, expires), expires


def session_of_cookie(settings: Settings, value: str, *, now: float) -> str | None:
    """The session id a cookie names when its signature is good and its expiry not passed."""
    version, _, rest = value.partition(".")
    session_id, _, rest = rest.partition(".")
    expires_text, _, sig = rest.partition(".")
    if version != _VERSION or not session_id or not sig or not expires_text.isdigit():
        return None
    refused = signed_media.refusal(
        signing_key(settings),
        _VERSION,
        session_id,
        expires_text,
        expires=int(expires_text),
        sig=sig,
        now=now,
    )
    return None if refused else session_id


def admin_of(settings: Settings, session_id: str, *, now: dt.datetime | None = None) -> str | None:
    """Who ``session_id`` signed in, while it is neither revoked nor expired."""
    now = now or utcnow()
    with session_scope(settings) as session:
        row = session.get(DashboardSession, session_id)
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        return row.admin


def admin_of_cookie(
    settings: Settings, value: str, *, now: dt.datetime | None = None
) -> str | None:
    """Who the cookie signs in (checked signature, expiry, then the row), or None."""
    now = now or utcnow()
    session_id = session_of_cookie(settings, value, now=now.timestamp())
    return admin_of(settings, session_id, now=now) if session_id else None


def revoke(settings: Settings, session_id: str, *, now: dt.datetime | None = None) -> None:
    """Sign-out: the session's cookie stops signing in, in every process, now."""
    with session_scope(settings) as session:
        session.execute(
            update(DashboardSession)
            .where(DashboardSession.id == session_id, DashboardSession.revoked_at.is_(None))
            .values(revoked_at=now or utcnow(), handoff_hash=None, handoff_until=None)
        )


def revoke_all(settings: Settings, *, now: dt.datetime | None = None) -> None:
    """Sign everyone out (a new admin password: the old one's sign-ins end with it)."""
    now = now or utcnow()
    with session_scope(settings) as session:
        session.execute(
            update(DashboardSession)
            .where(DashboardSession.revoked_at.is_(None), DashboardSession.expires_at > now)
            .values(revoked_at=now, handoff_hash=None, handoff_until=None)
        )


def _set_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        # Lax: a link from an alert or a chat (a top-level navigation) still arrives signed in.
        samesite="lax",
        secure=request.url.scheme == "https",
    )


async def _start(request: Request) -> Response:
    settings = get_settings()
    token = (await request.body()).decode("utf-8", "replace").strip()
    value, expires = await run_in_threadpool(exchange, settings, token)
    if not value:
        return Response("token spent or expired", status_code=403, media_type="text/plain")
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    _set_cookie(response, request, value, max(0, expires - int(utcnow().timestamp())))
    return response


async def _end(request: Request) -> Response:
    settings = get_settings()
    value = request.cookies.get(COOKIE, "")
    session_id = session_of_cookie(settings, value, now=utcnow().timestamp()) if value else None
    if session_id:
        await run_in_threadpool(revoke, settings, session_id)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    _set_cookie(response, request, "", 0)
    return response


def routes() -> list[Route]:
    return [
        Route(f"{ROUTE}/start", _start, methods=["POST"]),
        Route(f"{ROUTE}/end", _end, methods=["POST"]),
    ]
