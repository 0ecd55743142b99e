"""The API refuses before it reads: token first, then a body size cap, as raw ASGI.

FastAPI reads and parses a JSON body before any dependency runs, so a token check written
as a dependency comes too late: a 300 MB POST with no token was read whole into memory
before its 401. This middleware sits outside FastAPI and looks only at the headers:

- no or wrong token on an ``/api/`` path: 401 at once, the body never read;
- a declared ``Content-Length`` over ``API_MAX_BODY_BYTES``: 413 at once;
- a chunked body that grows past the cap while being read: 413, and the rest is not read.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

from catwalk.api.auth import unauthorized

Scope = dict[str, Any]
Message = dict[str, Any]


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


async def _answer(
    send: Any, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The client may still be sending: tell it the connection will not be reused.
    raw.append((b"connection", b"close"))
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RefuseBeforeReading:
    """ASGI middleware: authenticate from the headers and cap the body before the app reads."""

    def __init__(self, app: Any, *, token: str, max_body_bytes: int, prefix: str = "/api/") -> None:
        self.app = app
        self._token = token.encode()
        self._max = max_body_bytes
        self._prefix = prefix

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self._prefix):
            await self.app(scope, receive, send)
            return
        scheme, _, credentials = _header(scope, b"authorization").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            refusal = unauthorized("missing")
        elif not hmac.compare_digest(credentials.encode(), self._token):
            refusal = unauthorized("invalid")
        else:
            refusal = None
        if refusal is not None:
            await _answer(send, refusal.status_code, str(refusal.detail), refusal.headers)
            return
        declared = _header(scope, b"content-length")
        if declared.strip().isdigit() and int(declared) > self._max:
            await _answer(send, 413, self._too_large())
            return
        if scope.get("method") == "HEAD":
            await self._head_as_get(scope, receive, send)
            return
        await self._capped(scope, receive, send)

    async def _head_as_get(self, scope: Scope, receive: Any, send: Any) -> None:
        """HEAD answers what GET would, without the body (RFC 9110), not 405."""

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body"):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)

    def _too_large(self) -> str:
        return f"request body larger than {self._max} bytes (API_MAX_BODY_BYTES)"

    async def _capped(self, scope: Scope, receive: Any, send: Any) -> None:
        seen = 0
        answered = False
        started = False

        async def capped_receive() -> Message:
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max:
                    answered = True
                    if not started:
                        await _answer(send, 413, self._too_large())
                    # The app sees the client gone and stops; nothing more is read.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 is the answer; drop whatever the app says after it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, capped_receive, guarded_send)
