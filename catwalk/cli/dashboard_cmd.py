"""``catwalk dashboard``: start the Streamlit admin app; ``catwalk hash-password``: make a
value for CATWALK_ADMIN_PASSWORD_HASH."""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from catwalk.config import get_settings
from catwalk.errors import ConfigError

# Streamlit options that make it a server, not a developer tool: no browser, no file
# watcher, no telemetry, a quiet toolbar, and catwalk's colours.
_STREAMLIT_FLAGS = {
    "server.headless": "true",
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "browser.gatherUsageStats": "false",
    "global.developmentMode": "false",
    "client.toolbarMode": "minimal",
    # A page's unexpected error shows a generic message in the browser; the traceback (source
    # paths) only reaches the server's console.
    "client.showErrorDetails": "none",
    "theme.base": "light",
    "theme.primaryColor": "#C2255C",
    "theme.backgroundColor": "#FFFFFF",
    "theme.secondaryBackgroundColor": "#F6F3F1",
    "theme.textColor": "#1F1B24",
}


def dashboard(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    address: Annotated[
        str, typer.Option(help="Address to bind (0.0.0.0 to serve other machines).")
    ] = "127.0.0.1",
    reset_password: Annotated[
        bool,
        typer.Option(
            "--reset-password",
            help="Embedded mode: make a new admin password (printed once) and sign everyone out.",
        ),
    ] = False,
) -> None:
    """Start the admin dashboard (Streamlit) and print where to open it."""
    from catwalk.dashboards import auth, media_links, sessions
    from catwalk.db import get_engine

    settings = get_settings()
    get_engine(settings)  # migrate now, not inside the first page view
    # The st.App around the pages: it adds the route that serves media to signed links only.
    app_file = Path(str(resources.files("catwalk.dashboards") / "server.py"))
    try:
        # Made now: a home it cannot write (or a short DASHBOARD_SESSION_SECRET) is one line
        # here, not a traceback at the first sign-in.
        media_links.signing_key(settings)
        sessions.signing_key(settings)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the dashboard's keys in CATWALK_HOME: {exc.strerror or exc}"
        ) from exc

    if settings.admin_password_hash:
        auth.check_hash_format(settings.admin_password_hash)  # one line now, not a traceback later
    password: str | None = None
    configured = settings.admin_password or settings.admin_password_hash
    if reset_password and (configured or not auth.is_embedded(settings)):
        raise ConfigError(
            "--reset-password changes embedded mode's generated password; this dashboard's "
            "password is set by CATWALK_ADMIN_PASSWORD or CATWALK_ADMIN_PASSWORD_HASH"
            if configured
            else "--reset-password is for embedded mode: set CATWALK_ADMIN_PASSWORD(_HASH)"
        )
    if not configured:
        if auth.is_embedded(settings):
            password = auth.embedded_password(settings, reset=reset_password)
            if reset_password:
                # Whoever had the old password must not stay signed in with it.
                sessions.revoke_all(settings)
        elif not auth.admin_emails(settings):
            raise ConfigError(
                "the dashboard needs admins: set CATWALK_ADMIN_PASSWORD (or CATWALK_ADMIN_PASSWORD_HASH, "
                "see `catwalk hash-password`), or CATWALK_ADMIN_EMAILS with [auth] in .streamlit/secrets.toml"
            )

    host = "localhost" if address in ("127.0.0.1", "0.0.0.0") else address
    print(f"catwalk dashboard: http://{host}:{port}")
    if password:
        where = auth.generated_hash_path(settings)
        print(f"admin password (new; shown only now, its hash kept in {where}): {password}")
    elif not configured and auth.is_embedded(settings):
        print("admin password: the one printed when it was made (new one: --reset-password)")
    print("Ctrl-C stops it.", flush=True)

    env = {
        **os.environ,
        # The app and the jobs it starts must see this home and this database, wherever the
        # command was run from.
        "CATWALK_HOME": str(settings.catwalk_home),
    }
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_file),
        "--server.port",
        str(port),
        "--server.address",
        address,
    ]
    for name, value in _STREAMLIT_FLAGS.items():
        command += [f"--{name}", value]
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def hash_password() -> None:
    """Read a password (hidden) and print its hash for CATWALK_ADMIN_PASSWORD_HASH."""
    from catwalk.dashboards import auth

    password = typer.prompt("Admin password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        raise ConfigError("use at least 12 characters")
    print(auth.hash_password(password))


def register(app: typer.Typer) -> None:
    app.command()(dashboard)
    app.command("hash-password")(hash_password)
