"""Serving the API: ``serve`` for ``catwalk api`` (and ``bench/api.py``), ``running_server``
for the tests that need a real socket in this process.

``serve`` binds one socket and hands it to ``workers`` uvicorn processes, which the kernel
spreads connections over; more than one needs the app as an import string of a factory
(each worker is a new interpreter that builds its own app, engine and pool).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI


def cpu_workers(configured: int) -> int:
    """``configured`` processes, or one per CPU when it is 0."""
    return configured or os.cpu_count() or 1


def serve(
    app: FastAPI | str,
    *,
    host: str,
    port: int,
    workers: int = 1,
    on_bound: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Serve until SIGINT or SIGTERM. ``app`` is an app, or ``"module:factory"`` (required
    for ``workers`` > 1). ``on_bound`` gets the base URL once the port is bound (port 0:
    the one the OS picked)."""
    if workers > 1 and not isinstance(app, str):
        raise TypeError("several workers need the app as an import string of a factory")
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        workers=workers,
        factory=isinstance(app, str),
        **options,
    )
    sock = config.bind_socket()
    # Listening now, not when a worker has loaded the app: a client that read "running on"
    # waits in the backlog instead of being refused.
    sock.listen(config.backlog)
    if on_bound is not None:
        on_bound(f"http://{host}:{sock.getsockname()[1]}")
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])


@contextmanager
def running_server(app: FastAPI, *, host: str = "127.0.0.1", **options: object) -> Iterator[str]:
    """Serve ``app`` on a port the OS picks, in a thread; yields the base URL, stops on exit."""
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
