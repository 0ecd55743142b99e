"""A fake fal.ai queue serving Pika endpoints, as a small stateful Starlette app.

Faithful to the wire format in PROVIDERS.md §2-3: submit ``POST /{endpoint_id}`` answers
``request_id``, ``status_url``, ``response_url``, ``cancel_url`` (under ``/{owner}/{app}/``,
without the endpoint's sub-path: a rebuilt URL 404s, as on fal), ``status`` and
``queue_position``; status answers 202 ``IN_QUEUE`` (with positions) and ``IN_PROGRESS``
(with logs when ``logs=1``/``true``), then 200 ``COMPLETED``; the result is the model output
unwrapped, or the failure (a 422 ``detail`` list, a content-policy violation, an
infrastructure ``error_type``) since fal reports failed requests as COMPLETED; cancel is
``PUT .../cancel``. The key goes in ``Authorization: Key ...``.

Requests advance one step per status poll (deterministic, no clocks): ``queue_polls`` polls
in the queue, ``progress_polls`` in progress, then the video is rendered for real (ffmpeg,
from the two keyframes, given as data URIs or URLs) and served from the fake's own URL, like
fal's CDN.

Misbehaviour (constructor ``faults=`` or ``POST /_fake/faults``), each with ``on`` =
``submit`` | ``status`` | ``result`` | ``download`` | ``any``: ``latency``, ``rate_limit``
(429), ``unavailable`` (503), ``malformed`` (200 with a body that is not JSON); and, attached
to the next submitted request (``on`` = ``job``): ``content_policy``, ``validation``,
``infrastructure`` (``reason`` = the error type, default ``request_timeout``), ``stuck``
(never finishes). ``status_fail_rate`` answers that share of status polls 503, at random.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import random
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from catwalk.clients.media import render_transition
from catwalk.fakes._faults import Fault, FaultQueue

KINDS = frozenset(
    {
        "latency",
        "rate_limit",
        "unavailable",
        "malformed",
        "content_policy",
        "validation",
        "infrastructure",
        "stuck",
    }
)
_JOB_KINDS = frozenset({"content_policy", "validation", "infrastructure", "stuck"})
_INFRA_STATUS = {
    "request_timeout": 504,
    "startup_timeout": 504,
    "runner_scheduling_failure": 503,
    "runner_connection_timeout": 503,
    "runner_disconnected": 503,
}


@dataclass
class FakeRequest:
    request_id: str
    endpoint: str
    owner_app: str
    arguments: dict[str, Any]
    polls: int = 0
    state: str = "IN_QUEUE"  # IN_QUEUE | IN_PROGRESS | COMPLETED
    cancelled: bool = False
    failure: Fault | None = None
    error: tuple[int, dict[str, Any], dict[str, str]] | None = None
    video: Path | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z"


class FakeFal:
    """State and behaviour of one fake fal queue; ``app`` is the ASGI app."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        faults: list[Fault] | None = None,
        queue_polls: int = 2,
        progress_polls: int = 2,
        video_width: int = 160,
        latency_seconds: float = 0.0,
        files_dir: Path | None = None,
        status_fail_rate: float = 0.0,
        seed: int = 12,
    ) -> None:
        self.api_key = api_key
        # A share of status polls answered 503 at random (seeded): a flaky queue, not a script.
        self.status_fail_rate = status_fail_rate
        self._random = random.Random(seed)
        self.queue_polls = queue_polls
        self.progress_polls = progress_polls
        self.video_width = video_width
        self.latency_seconds = latency_seconds
        self.faults = FaultQueue(kinds=KINDS)
        for fault in faults or []:
            self._add(fault)
        self._own_dir = files_dir is None
        self.files_dir = files_dir or Path(tempfile.mkdtemp(prefix="fake-fal-"))
        self._lock = threading.Lock()
        self.requests: dict[str, FakeRequest] = {}
        self.counts = {"submit": 0, "status": 0, "result": 0, "cancel": 0, "download": 0}
        self.app = Starlette(
            routes=[
                Route("/_fake/faults", self._add_faults, methods=["POST"]),
                Route("/_fake/state", self._state, methods=["GET"]),
                Route("/_fake/reset", self._reset, methods=["POST"]),
                Route("/_fake/files/{name}", self._file, methods=["GET"]),
                Route("/{owner}/{app}/requests/{rid}/status", self._status, methods=["GET"]),
                Route("/{owner}/{app}/requests/{rid}/cancel", self._cancel, methods=["PUT"]),
                Route("/{owner}/{app}/requests/{rid}", self._result, methods=["GET"]),
                Route("/{endpoint:path}", self._submit, methods=["POST"]),
                Route("/{anything:path}", self._not_found, methods=["GET", "PUT", "DELETE"]),
            ]
        )

    def add_fault(self, kind: str, **options: Any) -> None:
        self._add(Fault(kind=kind, **options))

    def _add(self, fault: Fault) -> None:
        if fault.kind in _JOB_KINDS:
            fault.on = "job"  # these shape how the next submitted request ends
        elif fault.on == "job":
            raise ValueError(f"fault {fault.kind!r} happens at an endpoint, not on a job")
        self.faults.add(fault)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.counts,
                "requests": {
                    rid: {
                        "state": r.state,
                        "cancelled": r.cancelled,
                        "endpoint": r.endpoint,
                        "polls": r.polls,
                        "arguments": _summarize(r.arguments),
                    }
                    for rid, r in self.requests.items()
                },
                "pending_faults": self.faults.pending(),
            }

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.files_dir, ignore_errors=True)

    # Helpers.
    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def _fault(self, on: str) -> Fault | None:
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        while (fault := self.faults.take(on)) is not None:
            if fault.kind != "latency":
                return fault
            time.sleep(fault.seconds)
        return None

    def _unauthorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Key ") or not header[4:].strip():
            return JSONResponse(
                {"detail": "Authentication is required to access this application."},
                status_code=401,
            )
        if self.api_key is not None and header[4:].strip() != self.api_key:
            return JSONResponse({"detail": "No user found for Key ID and Secret"}, status_code=401)
        return None

    def _misbehave(self, fault: Fault) -> Response:
        if fault.kind == "rate_limit":
            return JSONResponse(
                {"detail": "Too many concurrent requests; please retry."},
                status_code=429,
                headers={"Retry-After": fault.retry_after or "3"},
            )
        if fault.kind == "unavailable":
            return JSONResponse({"detail": "Service temporarily unavailable"}, status_code=503)
        return Response('{"status": "IN_QU', media_type="application/json")  # malformed

    def _urls(self, request: Request, req: FakeRequest) -> dict[str, str]:
        base = f"{_base(request)}/{req.owner_app}/requests/{req.request_id}"
        return {
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }

    def _lookup(self, request: Request) -> FakeRequest | None:
        req = self.requests.get(request.path_params["rid"])
        owner_app = f"{request.path_params['owner']}/{request.path_params['app']}"
        return req if req is not None and req.owner_app == owner_app else None

    # Control endpoints.
    async def _add_faults(self, request: Request) -> Response:
        try:
            raw = await request.json()
            items = raw if isinstance(raw, list) else raw.get("faults", [raw])
            for item in items:
                self._add(Fault.from_dict(item))
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return JSONResponse({"pending_faults": self.faults.pending()})

    def _state(self, request: Request) -> Response:
        return JSONResponse(self.state())

    def _reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    def reset(self) -> None:
        """Forget faults, counts and requests."""
        self.faults.clear()
        with self._lock:
            self.requests.clear()
            for key in self.counts:
                self.counts[key] = 0

    def _not_found(self, request: Request) -> Response:
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    def _file(self, request: Request) -> Response:
        # Served like fal's CDN: public, no key.
        self._count("download")
        if (fault := self._fault("download")) is not None:
            return self._misbehave(fault)
        path = (self.files_dir / request.path_params["name"]).resolve()
        if not path.is_relative_to(self.files_dir.resolve()) or not path.is_file():
            return JSONResponse({"detail": "File not found"}, status_code=404)
        return FileResponse(path, media_type="video/mp4")

    # The queue API.
    async def _submit(self, request: Request) -> Response:
        raw = await request.body()
        return await run_in_threadpool(self._submit_sync, request, raw)

    def _submit_sync(self, request: Request, raw: bytes) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        self._count("submit")
        if (fault := self._fault("submit")) is not None:
            return self._misbehave(fault)
        endpoint = request.path_params["endpoint"].strip("/")
        segments = endpoint.split("/")
        if len(segments) < 2:
            return JSONResponse({"detail": "Application not found"}, status_code=404)
        try:
            arguments = json.loads(raw or b"{}")
        except ValueError:
            return JSONResponse({"detail": "Invalid JSON body"}, status_code=400)
        if not isinstance(arguments, dict):
            return JSONResponse(
                {"detail": "The request body must be a JSON object"}, status_code=422
            )
        req = FakeRequest(
            request_id=str(uuid.uuid4()),
            endpoint=endpoint,
            owner_app="/".join(segments[:2]),
            arguments=arguments,
            failure=self.faults.take("job"),
        )
        with self._lock:
            self.requests[req.request_id] = req
        return JSONResponse(
            {
                "status": "IN_QUEUE",
                "request_id": req.request_id,
                **self._urls(request, req),
                "queue_position": self.queue_polls,
            },
        )

    async def _status(self, request: Request) -> Response:
        return await run_in_threadpool(self._status_sync, request)

    def _status_sync(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        self._count("status")
        if (fault := self._fault("status")) is not None:
            return self._misbehave(fault)
        with self._lock:
            flaky = self.status_fail_rate > 0 and self._random.random() < self.status_fail_rate
        if flaky:
            return self._misbehave(Fault(kind="unavailable", on="status"))
        req = self._lookup(request)
        if req is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        with_logs = request.query_params.get("logs", "0").lower() in ("1", "true")
        self._advance(req)
        urls = self._urls(request, req)
        base = {"request_id": req.request_id, "response_url": urls["response_url"]}
        if req.state == "IN_QUEUE":
            position = max(0, self.queue_polls - req.polls)
            return JSONResponse(
                {**base, "status": "IN_QUEUE", "queue_position": position}, status_code=202
            )
        logs = list(req.logs) if with_logs else None
        if req.state == "IN_PROGRESS":
            return JSONResponse({**base, "status": "IN_PROGRESS", "logs": logs}, status_code=202)
        return JSONResponse(
            {**base, "status": "COMPLETED", "logs": logs, "metrics": {"inference_time": 1.5}}
        )

    def _advance(self, req: FakeRequest) -> None:
        """One poll moves a request one step along: queue, progress (with logs), completed."""
        with self._lock:
            if req.state == "COMPLETED":
                return
            req.polls += 1
            stuck = req.failure is not None and req.failure.kind == "stuck"
            in_progress = req.polls - self.queue_polls
            if in_progress <= 0:
                return
            if req.state == "IN_QUEUE":
                req.state = "IN_PROGRESS"
                req.logs.append(
                    {
                        "message": "Starting Pikaframes generation",
                        "level": "INFO",
                        "source": "USER",
                        "timestamp": _now(),
                    }
                )
            if stuck or in_progress <= self.progress_polls:
                done = min(99, round(100 * in_progress / (self.progress_polls + 1)))
                req.logs.append(
                    {
                        "message": f"Generating frames: {done}%",
                        "level": "INFO",
                        "source": "USER",
                        "timestamp": _now(),
                    }
                )
                return
        self._finish(req)

    def _finish(self, req: FakeRequest) -> None:
        """Validate the input like the model would and render the video (or the failure)."""
        if req.failure is not None:
            req.error = self._failure(req.failure)
        else:
            problems = _validate(req.arguments)
            if problems:
                req.error = (422, {"detail": problems}, {})
            else:
                try:
                    req.video = self._render(req)
                except _BadImage as exc:
                    req.error = (
                        422,
                        {
                            "detail": [
                                {
                                    "loc": ["body", "image_urls", exc.index],
                                    "msg": f"Could not load the image: {exc}",
                                    "type": "image_load_error",
                                }
                            ]
                        },
                        {},
                    )
        with self._lock:
            req.state = "COMPLETED"
            req.logs.append(
                {
                    "message": "Generation finished",
                    "level": "INFO",
                    "source": "USER",
                    "timestamp": _now(),
                }
            )

    def _failure(self, fault: Fault) -> tuple[int, dict[str, Any], dict[str, str]]:
        if fault.kind == "content_policy":
            return (
                422,
                {
                    "detail": [
                        {
                            "loc": ["body", "image_urls"],
                            "msg": "The content could not be processed because it "
                            "contained material flagged by a content checker.",
                            "type": "content_policy_violation",
                            "url": "https://docs.fal.ai/errors#content_policy_violation",
                            "ctx": {"categories": [fault.reason or "model_moderated"]},
                        }
                    ]
                },
                {"X-Fal-Retryable": "false"},
            )
        if fault.kind == "validation":
            return (
                422,
                {
                    "detail": [
                        {
                            "loc": ["body", "transitions", 0, "duration"],
                            "msg": fault.reason or "Input should be less than or equal to 10",
                            "type": "less_than_equal",
                        }
                    ]
                },
                {"X-Fal-Retryable": "false"},
            )
        error_type = fault.reason or "request_timeout"
        status = _INFRA_STATUS.get(error_type, 500)
        return (
            status,
            {
                "detail": "Request timed out" if "timeout" in error_type else "Runner failed",
                "error_type": error_type,
            },
            {"X-Fal-Error-Type": error_type},
        )

    def _render(self, req: FakeRequest) -> Path:
        args = req.arguments
        transitions = args.get("transitions") or [{"duration": 5}] * (len(args["image_urls"]) - 1)
        duration = sum(int(t.get("duration", 5)) for t in transitions)
        prompt = " ".join(
            [str(args.get("prompt", ""))] + [str(t.get("prompt", "")) for t in transitions]
        )
        with tempfile.TemporaryDirectory(dir=self.files_dir) as tmp:
            frames = []
            for i, url in enumerate(args["image_urls"][:2]):
                path = Path(tmp) / f"frame{i}.png"
                try:
                    with Image.open(io.BytesIO(_load_image(str(url)))) as img:
                        img.convert("RGB").save(path, format="PNG")
                except (OSError, ValueError, binascii.Error, httpx.HTTPError) as exc:
                    raise _BadImage(i, type(exc).__name__) from exc
                frames.append(path)
            out = self.files_dir / f"{req.request_id}.mp4"
            render_transition(
                frames[0],
                frames[1],
                out,
                duration_seconds=duration,
                width=self.video_width,
                style="dynamic" if "energetic" in prompt or "dynamic" in prompt else "smooth",
            )
        return out

    async def _result(self, request: Request) -> Response:
        return await run_in_threadpool(self._result_sync, request)

    def _result_sync(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        self._count("result")
        if (fault := self._fault("result")) is not None:
            return self._misbehave(fault)
        req = self._lookup(request)
        if req is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        if req.cancelled:
            return JSONResponse({"detail": "Request was cancelled"}, status_code=400)
        if req.state != "COMPLETED":
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        if req.error is not None:
            status, body, headers = req.error
            return JSONResponse(body, status_code=status, headers=headers)
        assert req.video is not None
        base = _base(request)
        return JSONResponse(
            {
                "video": {
                    "url": f"{base}/_fake/files/{req.video.name}",
                    "content_type": "video/mp4",
                    "file_name": req.video.name,
                    "file_size": req.video.stat().st_size,
                }
            }
        )

    def _cancel(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        self._count("cancel")
        req = self._lookup(request)
        if req is None:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        with self._lock:
            if req.state == "COMPLETED" and not req.cancelled:
                return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
            req.cancelled = True
            req.state = "COMPLETED"
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)


class _BadImage(Exception):
    def __init__(self, index: int, why: str) -> None:
        super().__init__(why)
        self.index = index


def _base(request: Request) -> str:
    """This app's own base URL, mount prefix included (``request.base_url`` drops it)."""
    return (
        f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}".rstrip(
            "/"
        )
    )


def _load_image(url: str) -> bytes:
    """A keyframe from a data URI or an http(s) URL (what fal accepts in ``*_url`` fields)."""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise ValueError("only base64 data URIs are supported")
        return base64.b64decode(payload, validate=True)
    if url.startswith(("http://", "https://")):
        response = httpx.get(url, timeout=15.0, follow_redirects=True)
        response.raise_for_status()
        return response.content
    raise ValueError("not a URL")


def _validate(args: dict[str, Any]) -> list[dict[str, Any]]:
    """The checks fal's input schema for pikaframes makes, as a 422 ``detail`` list."""
    problems: list[dict[str, Any]] = []
    urls = args.get("image_urls")
    if not isinstance(urls, list):
        return [{"loc": ["body", "image_urls"], "msg": "Field required", "type": "missing"}]
    if not 2 <= len(urls) <= 5:
        problems.append(
            {
                "loc": ["body", "image_urls"],
                "msg": "List should have between 2 and 5 items",
                "type": "too_short" if len(urls) < 2 else "too_long",
            }
        )
    transitions = args.get("transitions")
    if transitions is not None:
        if not isinstance(transitions, list) or len(transitions) != len(urls) - 1:
            problems.append(
                {
                    "loc": ["body", "transitions"],
                    "msg": "transitions must have one entry fewer than image_urls",
                    "type": "value_error",
                }
            )
        elif sum(int(t.get("duration", 5)) for t in transitions) > 25:
            problems.append(
                {
                    "loc": ["body", "transitions"],
                    "msg": "Total duration must be at most 25 seconds",
                    "type": "value_error",
                }
            )
    if args.get("resolution", "720p") not in ("720p", "1080p"):
        problems.append(
            {
                "loc": ["body", "resolution"],
                "msg": "Input should be '720p' or '1080p'",
                "type": "literal_error",
            }
        )
    return problems


def _summarize(arguments: dict[str, Any]) -> dict[str, Any]:
    """The submitted input without the (large) data URIs."""
    urls = arguments.get("image_urls") or []
    return {
        **{k: v for k, v in arguments.items() if k != "image_urls"},
        "image_urls": [u[:30] + "…" if isinstance(u, str) and len(u) > 30 else u for u in urls],
        "image_url_kinds": ["data-uri" if str(u).startswith("data:") else "url" for u in urls],
    }
