"""The sign-in screen and the question every page asks first: is this an admin?

Two ways in (NFR-003): the admin password (``CATWALK_ADMIN_PASSWORD``, its hash
``CATWALK_ADMIN_PASSWORD_HASH``, or the one ``catwalk dashboard`` generates in embedded mode),
or single sign-on through Streamlit's OIDC login (``[auth]`` in ``.streamlit/secrets.toml``)
for the e-mail addresses listed in ``CATWALK_ADMIN_EMAILS``.

A password sign-in lasts ``DASHBOARD_SESSION_HOURS``, across reloads, links and tabs: the
browser session keeps the id of its ``dashboard_sessions`` row and the browser a signed
HttpOnly cookie naming it (``sessions``); signing out revokes the row.
"""

from __future__ import annotations

import json
import time
from collections.abc import MutableMapping
from typing import Any, cast

import streamlit as st
from catwalk.dashboards import auth, data, media_links, sessions, ui
from streamlit.errors import StreamlitSecretNotFoundError

# This browser session's sign-in: the id of its dashboard_sessions row, checked every run.
_SESSION = "dashboard_session"
# The one-time token the next run hands to the browser, to trade for the cookie.
_HANDOFF = "session_handoff"
_CLEAR_COOKIE = "session_clear_cookie"


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, StreamlitSecretNotFoundError):
        return False


def _oidc_email() -> str | None:
    if not oidc_configured() or not st.user.is_logged_in:
        return None
    email = st.user.get("email")
    return str(email).lower() if email else None


def _password_admin() -> str | None:
    """Who the password sign-in of this browser session (or its cookie) is, while it lasts."""
    settings = data.settings()
    session_id = st.session_state.get(_SESSION)
    if not session_id:
        # A new browser session (a reload, a link, a new tab): the cookie says who signed in.
        cookie = st.context.cookies.get(sessions.COOKIE)
        # isinstance: under AppTest (no browser) the session's client is a mock, and so is
        # what its cookies return.
        session_id = (
            sessions.session_of_cookie(settings, cookie, now=time.time())
            if isinstance(cookie, str) and cookie
            else None
        )
    if not session_id:
        return None
    # Checked on every run, not once: a sign-out elsewhere or the expiry ends it here too.
    admin = sessions.admin_of(settings, session_id)
    if admin is None:
        st.session_state.pop(_SESSION, None)
        return None
    st.session_state[_SESSION] = session_id
    return admin


def current_admin() -> str | None:
    """Who is signed in ("admin" for the password, the e-mail for SSO), or None."""
    admin = _password_admin()
    if admin:
        return admin
    email = _oidc_email()
    if email and email in auth.admin_emails(data.settings()):
        return email
    return None


def _run_in_browser(js: str) -> None:
    # The cookie is HttpOnly, so only our own route can set or clear it; the page calls it.
    st.html(f"<script>{js}</script>", unsafe_allow_javascript=True, width="content")


def hand_over_cookie() -> None:
    """After a sign-in, have the browser trade its one-time token for the session cookie."""
    token = st.session_state.pop(_HANDOFF, None)
    if token:
        _run_in_browser(
            f"fetch({json.dumps(sessions.ROUTE + '/start')}, {{method: 'POST', "
            f"credentials: 'same-origin', cache: 'no-store', body: {json.dumps(token)}}});"
        )


def sign_out() -> None:
    settings = data.settings()
    media_links.end_session(cast("MutableMapping[str, Any]", st.session_state))
    session_id = st.session_state.pop(_SESSION, None)
    if session_id:
        sessions.revoke(settings, session_id)
        st.session_state[_CLEAR_COOKIE] = True
    if _oidc_email():
        st.logout()


def page() -> None:
    """The only page reachable before signing in (under every page's address, so a link or
    a reload keeps its page and query through the sign-in)."""
    settings = data.settings()
    if st.session_state.pop(_CLEAR_COOKIE, False):
        _run_in_browser(
            f"fetch({json.dumps(sessions.ROUTE + '/end')}, {{method: 'POST', "
            "credentials: 'same-origin', cache: 'no-store'});"
        )
    _, middle, _ = st.columns([1, 1.3, 1])
    with middle:
        st.title(":material/movie: catwalk")
        st.caption("Product videos, generated. Admins only.")
        email = _oidc_email()
        if email:
            st.error(ui.md(f"{email} is signed in but is not a catwalk admin."))
            st.button("Sign out", on_click=st.logout)
            return
        has_password = auth.password_configured(settings)
        if not has_password and not oidc_configured():
            st.error(
                "Sign-in is not configured. Set CATWALK_ADMIN_PASSWORD (or "
                "CATWALK_ADMIN_PASSWORD_HASH), or configure single sign-on, then restart."
            )
            return
        if has_password:
            with st.form("signin", border=True):
                password = st.text_input("Admin password", type="password", key="signin_password")
                submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
            if submitted:
                state = cast("MutableMapping[str, Any]", st.session_state)  # a MutableMapping
                result = auth.attempt_signin(settings, password, state)
                if result.ok:
                    started = sessions.start(settings, "admin")
                    st.session_state[_SESSION] = started.session_id
                    st.session_state[_HANDOFF] = started.token
                    st.rerun()
                st.error(result.message, icon=":material/lock:")
            if not (settings.admin_password or settings.admin_password_hash):
                st.caption(
                    "The password was printed by `catwalk dashboard` when it was made; "
                    "`catwalk dashboard --reset-password` makes a new one."
                )
        if oidc_configured():
            st.button("Sign in with single sign-on", on_click=st.login, width="stretch")
