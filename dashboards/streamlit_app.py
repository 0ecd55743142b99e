"""catwalk's admin dashboard: the router. Run with ``catwalk dashboard``.

Before sign-in the navigation holds only the sign-in page (under every page's address), so no
other page (nor any action on it) can be reached, even by typing its URL.
"""

from __future__ import annotations

import streamlit as st
from catwalk.dashboards import data, signin

from catwalk.errors import is_db_outage

st.set_page_config(page_title="catwalk admin", page_icon=":material/movie:", layout="wide")


_HOME = "products"


def _pages(review_title: str) -> dict[str, list[st.Page]]:
    return {
        "Catalog": [
            st.Page(
                "app_pages/products.py",
                title="Products",
                icon=":material/checkroom:",
                url_path=_HOME,
                default=True,
            ),
        ],
        "Work": [
            st.Page("app_pages/jobs.py", title="Jobs", icon=":material/motion_play:"),
            st.Page(
                "app_pages/review.py",
                title=review_title,
                icon=":material/rate_review:",
                url_path="review",
            ),
            st.Page(
                "app_pages/job_detail.py",
                title="Job detail",
                icon=":material/receipt_long:",
                url_path="job",
                visibility="hidden",
            ),
        ],
        "Money": [st.Page("app_pages/costs.py", title="Costs", icon=":material/payments:")],
    }


def _signin_pages() -> list[st.Page]:
    """The sign-in page under every page's address.

    Streamlit knows a page by its address alone, so after signing in the same run goes on to
    the page the link or the reload asked for, query and all (a job, a search), and a reload
    of /costs shows no "Page not found".
    """
    return [
        st.Page(
            signin.page,
            title="Sign in",
            icon=":material/lock:",
            # The default page's url_path reads "" (it is served at /); its name is _HOME.
            url_path=page.url_path or _HOME,
            default=page.url_path == "",
        )
        for section in _pages("Review").values()
        for page in section
    ]


def _render() -> None:
    admin = signin.current_admin()
    if admin is None:
        navigation = st.navigation(_signin_pages(), position="hidden")
    else:
        waiting = data.waiting_for_review()
        # The count of jobs waiting for a decision, in the navigation itself.
        navigation = st.navigation(_pages(f"Review ({waiting})" if waiting else "Review"))
        with st.sidebar:
            spend = data.spend(days=1)
            st.caption(f"Today ({spend.timezone})")
            left, right = st.columns(2)
            left.metric("Videos", f"{spend.generations}/{spend.generation_limit}")
            right.metric("Spend", f"${spend.spend:,.2f}")
            st.divider()
            st.caption(f"Signed in as **{admin}**")
            if st.button("Sign out", icon=":material/logout:", width="stretch"):
                signin.sign_out()
                st.rerun()
            signin.hand_over_cookie()
    navigation.run()


try:
    _render()
except Exception as exc:  # Streamlit's stop/rerun are BaseExceptions: they pass through
    if not is_db_outage(exc):
        raise
    from catwalk.db import unreachable

    st.error(
        f"{unreachable(exc, data.settings()).user_message}. Reload the page once it is back.",
        icon=":material/cloud_off:",
    )
