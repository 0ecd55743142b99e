"""The dashboard's server: Streamlit's (an ``st.App``) plus routes of our own.

``catwalk dashboard`` runs ``streamlit run`` on this file; Streamlit finds ``app`` and serves it
with uvicorn. Why routes of our own: ``st.image``/``st.video`` given a path serve it under
Streamlit's ``/media``, open to anyone with the address (``media_links`` explains the links);
and a script cannot set an HttpOnly cookie, which the session cookie is (``sessions``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from catwalk.dashboards import media_links, sessions

app = st.App(
    Path(__file__).with_name("streamlit_app.py"),
    routes=[*media_links.routes(), *sessions.routes()],
)
