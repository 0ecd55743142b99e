"""``catwalk api``: serve the HTTP API under uvicorn, one process per CPU by default."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from catwalk.config import get_settings

err = Console(stderr=True)

APP_FACTORY = "catwalk.api.app:create_app_from_env"


def api(
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")] = 8000,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; 0.0.0.0 to serve the network.")
    ] = "127.0.0.1",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Server processes (default API_WORKERS; 0 there: one per CPU)."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", min=1, help="Requests each process handles at once (API_THREADS)."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (the original video-generation contract) with uvicorn."""
    from catwalk.api import create_app
    from catwalk.api.auth import resolve_token
    from catwalk.api.server import cpu_workers, serve
    from catwalk.db import dispose_engines, get_engine

    settings = get_settings()
    token, generated = resolve_token(settings, allow_generated=True)
    if generated:
        # Embedded mode only: a token for this process, shown on this terminal and nowhere
        # else (not logged, not stored). Set CATWALK_API_TOKEN to keep one across restarts.
        err.print("[yellow]CATWALK_API_TOKEN is not set; this run accepts the token:[/]")
        err.print(token, markup=False, highlight=False, soft_wrap=True)
    count = workers or cpu_workers(settings.api_workers)
    # Built here even when workers build their own: a setting that stops the app is then
    # this command's one-line error, not a traceback from each worker.
    app = create_app(settings, token=token, threads=threads)
    if count == 1:
        serve(app, host=host, port=port, log_level="info", server_header=False)
        return
    # Workers are new interpreters that read their settings from the environment.
    os.environ["CATWALK_API_TOKEN"] = token
    if threads:
        os.environ["API_THREADS"] = str(threads)
    # Migrate once, here: workers starting together on a new database would race to.
    get_engine(settings)
    dispose_engines()
    serve(APP_FACTORY, host=host, port=port, workers=count, log_level="info", server_header=False)
