"""The sign-in screen and the question every page asks first: is this an admin?

Two ways in (NFR-003): the admin password (``CATWALK_ADMIN_PASSWORD``, its hash
``CATWALK_ADMIN_PASSWORD_HASH``, or the one ``catwalk dashboard`` generates in embedded mode),
or single sign-on through Streamlit's OIDC login (``[auth]`` in ``.streamlit/secrets.toml``)
for the e-mail addresses listed in ``CATWALK_ADMIN_EMAILS``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, cast

import streamlit as st
from catwalk.dashboards import auth, data, media_links, ui
from streamlit.errors import StreamlitSecretNotFoundError

_SIGNED_IN = "admin_signed_in"


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


def current_admin() -> str | None:
    """Who is signed in ("admin" for the password, the e-mail for SSO), or None."""
    if st.session_state.get(_SIGNED_IN):
        return str(st.session_state[_SIGNED_IN])
    email = _oidc_email()
    if email and email in auth.admin_emails(data.settings()):
        return email
    return None


def sign_out() -> None:
    media_links.end_session(cast("MutableMapping[str, Any]", st.session_state))
    st.session_state.pop(_SIGNED_IN, None)
    if _oidc_email():
        st.logout()


def page() -> None:
    """The only page reachable before signing in."""
    settings = data.settings()
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
                    st.session_state[_SIGNED_IN] = "admin"
                    st.rerun()
                st.error(result.message, icon=":material/lock:")
            if not (settings.admin_password or settings.admin_password_hash):
                st.caption("The password was printed by `catwalk dashboard` when it started.")
        if oidc_configured():
            st.button("Sign in with single sign-on", on_click=st.login, width="stretch")
