"""``catwalk api``: serve the HTTP API under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from catwalk.config import get_settings

err = Console(stderr=True)


def api(
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")] = 8000,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; 0.0.0.0 to serve the network.")
    ] = "127.0.0.1",
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Requests handled at once (default 8).")
    ] = None,
) -> None:
    """Serve the HTTP API (the original video-generation contract) with uvicorn."""
    import uvicorn

    from catwalk.api import create_app
    from catwalk.api.app import DEFAULT_THREADS
    from catwalk.api.auth import resolve_token

    settings = get_settings()
    token, generated = resolve_token(settings, allow_generated=True)
    if generated:
        # Embedded mode only: a token for this process, shown on this terminal and nowhere
        # else (not logged, not stored). Set CATWALK_API_TOKEN to keep one across restarts.
        err.print("[yellow]CATWALK_API_TOKEN is not set; this run accepts the token:[/]")
        err.print(token, markup=False, highlight=False, soft_wrap=True)
    app = create_app(settings, token=token, threads=threads or DEFAULT_THREADS)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
