"""The Streamlit admin dashboard: ``streamlit_app.py`` routes to the pages in ``app_pages/``;
``data.py`` holds the (cached) reads, ``auth.py`` sign-in, ``signin.py`` the sign-in screen.

Nothing imports ``dashboards``; actions on jobs go through ``submission``.
"""

__all__: list[str] = []
