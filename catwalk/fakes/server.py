"""Run a fake (any ASGI app) under uvicorn in a background thread, on a free local port.

Used by the tests and by ``catwalk fakes``. Binding the socket ourselves on port 0 lets the
OS pick a free port before uvicorn starts, so parallel test runs never collide.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn


class RunningServer:
    """A uvicorn server in a thread; ``url`` is its base URL (no trailing slash)."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"fake-{self.port}",
            daemon=True,
        )

    def start(self, timeout: float = 15.0) -> Self:
        self._thread.start()
        until = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > until:
                raise RuntimeError(f"the fake server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def serve_forever(self) -> None:
        """Run in the calling thread until interrupted (``catwalk fakes``)."""
        self._server.run(sockets=[self._sock])

    def __enter__(self) -> Self:
        return self if self._thread.is_alive() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Start ``app`` on ``host:port`` (0: a free port) and return once it accepts requests."""
    return RunningServer(app, host=host, port=port).start()


def combined_app(gemini: Any, fal: Any) -> Any:
    """Both fakes behind one port: the Gemini API under ``/gemini``, the fal queue under ``/fal``."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/gemini", app=gemini.app), Mount("/fal", app=fal.app)])
