"""Serving the API in this process: a real uvicorn server on a free port, in a thread.

Used by the tests that need a real socket and by ``bench/api.py``; ``catwalk api`` runs
uvicorn in the foreground instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


@contextmanager
def running_server(app: FastAPI, *, host: str = "127.0.0.1", **options: object) -> Iterator[str]:
    """Serve ``app`` on a port the OS picks; yields the base URL, stops on exit."""
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", **options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="catwalk-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
