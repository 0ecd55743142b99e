"""Pika on fal.ai: the transition video through fal's queue (submit, poll, result, download).

The whole queue hides inside ``FalPikaVideoGenerator.animate``:

1. submit ``POST {PIKA_LABS_API_URL}/{PIKA_ENDPOINT}`` (``Authorization: Key ...``) and hand
   the answer (request id and the status, response and cancel URLs) to ``on_submitted`` at
   once, so the caller saves it before any waiting; ``resume=`` skips this step;
2. poll the returned ``status_url`` (never a rebuilt one: fal's status URLs drop the
   endpoint's sub-path) and report queue position and progress;
3. fetch ``response_url``; fal reports failed requests as COMPLETED, so the failure is read
   from the result (422 ``detail`` lists, content-policy errors, infrastructure error types);
4. download the video at once (fal's CDN URLs expire) and make a poster from its first frame.

The request is cancelled (``cancel_url``) when the deadline passes or when ``on_progress``
raises (an admin's cancel), and the error is re-raised.

Must not import Prefect, tasks, flows or db.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from catwalk.clients._http import (
    Scrubber,
    json_or_none,
    parse_retry_after,
    short,
    status_error,
    transport_error,
)
from catwalk.clients.base import OnProgress, OnSubmitted
from catwalk.clients.media import poster_from_video, probe_video
from catwalk.config import Settings
from catwalk.domain import GeneratedVideo, ProviderProgress, SubmittedRequest, Usage, VideoRequest
from catwalk.errors import (
    ConfigError,
    JobTimedOut,
    PermanentProviderError,
    ProviderError,
    StorageError,
    TransientProviderError,
)

logger = logging.getLogger(__name__)

# Status and result polls: backoff cap after a 5xx/429/timeout, and how many blips in a row
# are waited out when the caller gave no deadline (with one, the deadline bounds them).
MAX_BLIP_PAUSE_SECONDS = 15.0
MAX_BLIPS_WITHOUT_DEADLINE = 8

PROVIDER = "fal"
DEFAULT_BASE_URL = "https://queue.fal.run"
DEFAULT_ENDPOINT = "fal-ai/pika/v2.2/pikaframes"

STYLE_PROMPTS = {
    "smooth": (
        "The fashion model moves smoothly and naturally from the first pose to the second, "
        "steady camera, soft studio light, the garment keeps its exact look."
    ),
    "dynamic": (
        "The fashion model turns and steps energetically into the second pose, the camera "
        "follows with a gentle push-in, lively catwalk feel, the garment keeps its exact look."
    ),
}
NEGATIVE_PROMPT = "distorted body, extra limbs, changing clothes, text, watermark, blur"

# fal infrastructure error types (docs.fal.ai request errors): capacity or timeouts, retry.
_TRANSIENT_ERROR_TYPES = frozenset(
    {
        "request_timeout",
        "startup_timeout",
        "runner_scheduling_failure",
        "runner_connection_timeout",
        "runner_disconnected",
        "runner_connection_refused",
        "runner_connection_error",
        "runner_incomplete_response",
        "runner_server_error",
        "internal_error",
    }
)
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
_STEPS = re.compile(r"(\d+)\s*/\s*(\d+)")


def data_uri(data: bytes, mime_type: str) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def fraction_from_logs(logs: list[dict[str, Any]] | None) -> tuple[float | None, str]:
    """Progress and the latest message from fal's logs ("... 40%" or "step 12/50")."""
    for entry in reversed(logs or []):
        message = str(entry.get("message", "")) if isinstance(entry, dict) else ""
        if not message:
            continue
        if match := _PERCENT.search(message):
            return min(1.0, float(match.group(1)) / 100), short(message, 120)
        if (match := _STEPS.search(message)) and int(match.group(2)) > 0:
            return min(1.0, int(match.group(1)) / int(match.group(2))), short(message, 120)
        return None, short(message, 120)
    return None, ""


class _RequestSpent(Exception):
    """A resumed request that can no longer give a video (failed or forgotten by fal)."""


class FalPikaVideoGenerator:
    """Pikaframes transitions through fal.ai's queue, over httpx."""

    name = PROVIDER

    def __init__(
        self,
        *,
        api_key: SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        endpoint: str = DEFAULT_ENDPOINT,
        poll_interval_seconds: float = 2.0,
        timeout_seconds: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key.get_secret_value().strip():
            raise ConfigError("PIKA_LABS_API_KEY is empty")
        self._key = api_key
        self.endpoint = endpoint.strip("/")
        self._submit_url = f"{base_url.rstrip('/')}/{self.endpoint}"
        self._poll = poll_interval_seconds
        self._sleep = sleep
        secret = api_key.get_secret_value()
        # A fal key is "key_id:key_secret"; the secret half alone must not show either.
        self._scrub = Scrubber(secret, secret.partition(":")[2])
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds)),
            transport=transport,
            follow_redirects=True,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
    ) -> FalPikaVideoGenerator:
        if settings.pika_labs_api_key is None:
            raise ConfigError(
                "VIDEO_PROVIDER=pika needs PIKA_LABS_API_KEY (a fal.ai key); "
                "set it, or use VIDEO_PROVIDER=offline"
            )
        return cls(
            api_key=settings.pika_labs_api_key,
            base_url=settings.pika_labs_api_url,
            endpoint=settings.pika_endpoint,
            poll_interval_seconds=settings.provider_poll_interval_seconds,
            timeout_seconds=settings.provider_http_timeout_seconds,
            transport=transport,
        )

    def request_body(self, request: VideoRequest) -> dict[str, Any]:
        """Pikaframes input: two keyframes (URLs when storage gave some, else data URIs)."""
        start = request.start_image_url or data_uri(request.start_image, request.mime_type)
        end = request.end_image_url or data_uri(request.end_image, request.mime_type)
        prompt = STYLE_PROMPTS.get(request.style, STYLE_PROMPTS["smooth"])
        return {
            "image_urls": [start, end],
            "prompt": prompt,
            "negative_prompt": NEGATIVE_PROMPT,
            "transitions": [{"duration": request.duration_seconds, "prompt": prompt}],
            "resolution": request.resolution,
        }

    def animate(
        self,
        request: VideoRequest,
        *,
        work_dir: Path,
        resume: SubmittedRequest | None = None,
        on_submitted: OnSubmitted | None = None,
        on_progress: OnProgress | None = None,
        deadline: float | None = None,
    ) -> GeneratedVideo:
        if resume is not None:
            logger.info("fal: re-attaching to request %s", resume.request_id)
            try:
                return self._follow(request, resume, work_dir, on_progress, deadline)
            except _RequestSpent as spent:
                # The saved request failed or expired: it cannot give a video, and a new
                # submission is the only way forward (this is not a second payment for it).
                logger.info(
                    "fal: saved request %s is spent (%s); submitting anew", resume.request_id, spent
                )
        if deadline is not None and time.monotonic() >= deadline:
            # Submitting now would only buy a request we must cancel at once.
            raise JobTimedOut("the job's time limit passed before the video could be requested")
        submitted = self._submit(request)
        if on_submitted is not None:
            try:
                on_submitted(submitted)
            except BaseException:
                # Nobody will remember this request: stop it rather than pay for an orphan.
                self._cancel(submitted)
                raise
        try:
            return self._follow(request, submitted, work_dir, on_progress, deadline)
        except _RequestSpentWith as spent:
            # The next attempt resumes this request, sees it spent and submits a new one.
            raise spent.error from None
        except _RequestSpent as spent:
            raise TransientProviderError(
                f"the video provider lost request {submitted.request_id}: {spent}",
                provider=PROVIDER,
                request_id=submitted.request_id,
            ) from spent

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._key.get_secret_value()}"}

    def _call(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, url, headers=self._auth(), **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(exc, provider=PROVIDER, what=what) from exc

    def _submit(self, request: VideoRequest) -> SubmittedRequest:
        response = self._call(
            "POST", self._submit_url, what="the video provider", json=self.request_body(request)
        )
        body = json_or_none(response)
        if response.status_code >= 400:
            raise self._http_error(response, body, what="submit")
        try:
            submitted = SubmittedRequest(
                request_id=str(body["request_id"]),
                status_url=str(body["status_url"]),
                response_url=str(body["response_url"]),
                cancel_url=str(body["cancel_url"]),
            )
        except (TypeError, KeyError) as exc:
            # fal_client treats these four as required too. The request may exist (and bill)
            # with nothing to follow it by; there is no idempotency key to find it again.
            raise TransientProviderError(
                f"the video provider answered the submit unreadably (HTTP {response.status_code})",
                provider=PROVIDER,
                status_code=response.status_code,
            ) from exc
        logger.info(
            "fal: submitted %s as request %s (queue position %s)",
            self.endpoint,
            submitted.request_id,
            body.get("queue_position"),
        )
        return submitted

    def _follow(
        self,
        request: VideoRequest,
        submitted: SubmittedRequest,
        work_dir: Path,
        on_progress: OnProgress | None,
        deadline: float | None,
    ) -> GeneratedVideo:
        try:
            self._wait(submitted, on_progress, deadline)
        except JobTimedOut as exc:
            exc.provider_request_state = self._cancel(submitted)  # type: ignore[attr-defined]
            raise
        except (ProviderError, _RequestSpent):
            # Polling failed, the request did not: a retry re-attaches to it.
            raise
        except Exception as exc:
            # on_progress raised (an admin's cancel, a flow timeout): stop paying for it.
            # A BaseException (worker shutdown) leaves it running for a restart to resume.
            exc.provider_request_state = self._cancel(submitted)  # type: ignore[attr-defined]
            raise
        try:
            return self._collect(request, submitted, work_dir, deadline)
        except JobTimedOut as exc:
            exc.provider_request_state = self._cancel(submitted)  # type: ignore[attr-defined]
            raise

    def _pause_after_blip(
        self,
        exc: TransientProviderError,
        submitted: SubmittedRequest,
        deadline: float | None,
        blips: int,
    ) -> None:
        """Back off before asking fal again; give up (raise) only when waiting cannot help."""
        if deadline is None and blips >= MAX_BLIPS_WITHOUT_DEADLINE:
            raise exc
        pause = min(MAX_BLIP_PAUSE_SECONDS, max(self._poll, 0.5) * (2 ** min(blips, 6)))
        if exc.retry_after_seconds:
            pause = max(pause, min(float(exc.retry_after_seconds), MAX_BLIP_PAUSE_SECONDS))
        if self._poll <= 0:
            pause = 0.0  # tests poll without waiting
        if deadline is not None:
            pause = max(0.0, min(pause, deadline - time.monotonic()))
        logger.info(
            "fal: %s for request %s; asking again in %.1f s", exc, submitted.request_id, pause
        )
        self._sleep(pause)

    def _wait(
        self, submitted: SubmittedRequest, on_progress: OnProgress | None, deadline: float | None
    ) -> None:
        looked = False
        blips = 0
        while True:
            # Never cancel a request without looking at it first (issue #13): a resumed run
            # past its deadline may find its video COMPLETED and already paid for.
            if looked and deadline is not None and time.monotonic() >= deadline:
                raise JobTimedOut(
                    f"the video provider did not finish request {submitted.request_id} within the "
                    "job's time limit; the request was cancelled"
                )
            try:
                response = self._call(
                    "GET",
                    submitted.status_url,
                    what="the video provider's status",
                    params={"logs": "1"},
                )
                body = json_or_none(response)
                if response.status_code == 404:
                    raise _RequestSpent(f"fal does not know request {submitted.request_id}")
                if response.status_code >= 400:
                    raise self._http_error(
                        response, body, what="status", request_id=submitted.request_id
                    )
            except TransientProviderError as exc:
                # A poll is free and the request keeps running at fal: wait and ask again,
                # rather than ending the attempt on one 503 (bounded by the job's deadline).
                looked = True  # fal answered (if only with a blip): the request was looked at
                self._pause_after_blip(exc, submitted, deadline, blips)
                blips += 1
                continue
            looked = True
            blips = 0
            if not isinstance(body, dict) or "status" not in body:
                raise TransientProviderError(
                    f"the video provider's status answer is unreadable (HTTP {response.status_code})",
                    provider=PROVIDER,
                    request_id=submitted.request_id,
                )
            status = str(body["status"])
            if status == "COMPLETED":
                if on_progress is not None:
                    on_progress(
                        ProviderProgress(
                            request_id=submitted.request_id, status=status, fraction=1.0
                        )
                    )
                return
            if status == "IN_QUEUE":
                position = body.get("queue_position")
                progress = ProviderProgress(
                    request_id=submitted.request_id,
                    status=status,
                    queue_position=int(position) if isinstance(position, int) else None,
                    message="queued at the video provider",
                )
            elif status == "IN_PROGRESS":
                fraction, message = fraction_from_logs(body.get("logs"))
                progress = ProviderProgress(
                    request_id=submitted.request_id,
                    status=status,
                    fraction=fraction,
                    message=message or "rendering video",
                )
            else:
                raise TransientProviderError(
                    f"the video provider reported an unknown status {short(status, 40)!r}",
                    provider=PROVIDER,
                    request_id=submitted.request_id,
                )
            if on_progress is not None:
                on_progress(progress)
            pause = self._poll
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            self._sleep(pause)

    def _collect(
        self,
        request: VideoRequest,
        submitted: SubmittedRequest,
        work_dir: Path,
        deadline: float | None = None,
    ) -> GeneratedVideo:
        blips = 0
        tried = False
        while True:
            # A finished request is paid for: fetch its result at least once, even past the
            # deadline (a resumed run, issue #13), before giving up on it.
            if tried and deadline is not None and time.monotonic() >= deadline:
                raise JobTimedOut(
                    f"the video provider's result for request {submitted.request_id} could not "
                    "be fetched within the job's time limit"
                )
            tried = True
            try:
                response = self._call(
                    "GET", submitted.response_url, what="the video provider's result"
                )
            except TransientProviderError as exc:
                self._pause_after_blip(exc, submitted, deadline, blips)
                blips += 1
                continue
            body = json_or_none(response)
            if response.status_code < 400:
                break
            error, spent = self._result_error(
                response, body, submitted, resolution=request.resolution
            )
            if spent and error.is_transient:
                raise _RequestSpentWith(error)
            if not spent and error.is_transient:
                # A gateway blip on the fetch says nothing about the request: ask again.
                self._pause_after_blip(error, submitted, deadline, blips)  # type: ignore[arg-type]
                blips += 1
                continue
            raise error
        video = body.get("video") if isinstance(body, dict) else None
        url = video.get("url") if isinstance(video, dict) else None
        if not url:
            raise TransientProviderError(
                f"the video provider's result for {submitted.request_id} has no video",
                provider=PROVIDER,
                request_id=submitted.request_id,
            )
        work_dir.mkdir(parents=True, exist_ok=True)
        out = work_dir / f"{submitted.request_id}.mp4"
        poster = work_dir / f"{submitted.request_id}.jpg"
        self._download(str(url), out, submitted)
        facts = probe_video(out)
        poster_from_video(out, poster)
        usage = Usage(
            service="pika",
            provider=PROVIDER,
            operation="animate",
            model=self.endpoint,
            # fal bills the seconds asked for (with a minimum, kept in prices.toml).
            units=Decimal(request.duration_seconds),
            unit="second",
            resolution=request.resolution,
            request_id=submitted.request_id,
            details={"seconds": request.duration_seconds, "video_seconds": facts.duration_seconds},
        )
        logger.info(
            "fal: request %s finished, %.2f s %dx%d video downloaded",
            submitted.request_id,
            facts.duration_seconds,
            facts.width,
            facts.height,
        )
        return GeneratedVideo(
            path=str(out),
            poster_path=str(poster),
            duration_seconds=facts.duration_seconds,
            usage=usage,
            provider_url=str(url),
        )

    def _download(self, url: str, out: Path, submitted: SubmittedRequest) -> None:
        # The CDN URL is public: no Authorization header, the key stays with fal's queue.
        tmp = out.with_suffix(".part")
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise TransientProviderError(
                        f"downloading the video of request {submitted.request_id} failed "
                        f"(HTTP {response.status_code})",
                        provider=PROVIDER,
                        status_code=response.status_code,
                        request_id=submitted.request_id,
                    )
                with tmp.open("wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
            tmp.replace(out)
        except httpx.TransportError as exc:
            raise transport_error(exc, provider=PROVIDER, what="the video download") from exc
        except OSError as exc:
            raise StorageError(
                f"cannot write the downloaded video to {out.parent}: {exc.strerror}"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)

    def _cancel(self, submitted: SubmittedRequest) -> str | None:
        """Best effort: an in-progress request may still finish (and bill) after this.

        Returns what fal said: "cancelled", "completed" (too late: it finished), "gone"
        (unknown to fal), or None when fal could not be asked.
        """
        if not submitted.cancel_url:
            return None
        try:
            response = self._client.put(submitted.cancel_url, headers=self._auth())
        except httpx.HTTPError as exc:
            logger.warning(
                "fal: cancelling request %s failed: %s", submitted.request_id, type(exc).__name__
            )
            return None
        body = json_or_none(response)
        state = body.get("status") if isinstance(body, dict) else None
        logger.info(
            "fal: cancel of request %s answered %s %s",
            submitted.request_id,
            response.status_code,
            state,
        )
        if response.status_code in (200, 202):
            return "cancelled"
        if state == "ALREADY_COMPLETED":
            return "completed"
        if response.status_code == 404:
            return "gone"
        return None

    def close_request(
        self,
        submitted: SubmittedRequest,
        *,
        duration_seconds: int,
        resolution: str,
        verdict: str | None = None,
    ) -> tuple[str | None, Usage | None]:
        """Stop a request its job no longer wants; say what fal bills for it.

        ("cancelled", zero-amount usage) when fal stopped it; ("billed", usage) when it had
        already finished with a video (fal bills completed requests); ("failed", None) when
        it finished with an error; ("gone", None) when fal forgot it; (None, None) when fal
        could not be asked (the caller keeps it open and asks again later). ``verdict`` is
        the answer of a cancel already sent (``JobTimedOut.provider_request_state``).
        """
        verdict = verdict or self._cancel(submitted)
        usage = Usage(
            service="pika",
            provider=PROVIDER,
            operation="animate",
            model=self.endpoint,
            units=Decimal(duration_seconds),
            unit="second",
            resolution=resolution,
            request_id=submitted.request_id,
            billed=verdict == "completed",
            details={"seconds": duration_seconds, "closed": verdict},
        )
        if verdict == "cancelled":
            return "cancelled", replace(usage, units=Decimal(0))
        if verdict != "completed":
            return verdict, None
        try:
            response = self._call("GET", submitted.response_url, what="the video provider's result")
        except TransientProviderError:
            return "billed", usage  # finished at fal: billed unless it failed, assume billed
        body = json_or_none(response)
        video = body.get("video") if isinstance(body, dict) else None
        if response.status_code < 400 and isinstance(video, dict) and video.get("url"):
            return "billed", usage
        if response.status_code >= 500 or response.status_code == 429:
            return "billed", usage  # the gateway, not the request, failed: fal bills it
        return "failed", None

    def _result_error(
        self, response: httpx.Response, body: Any, submitted: SubmittedRequest, *, resolution: str
    ) -> tuple[ProviderError, bool]:
        """The error a failed result means, and whether the request itself failed (spent)."""
        status = response.status_code
        detail = body.get("detail") if isinstance(body, dict) else None
        error_type = (
            body.get("error_type") if isinstance(body, dict) else None
        ) or response.headers.get("x-fal-error-type")
        retryable = response.headers.get("x-fal-retryable", "").lower() == "true"
        # fal bills a failed request only when GPU time was spent, which the result does not
        # say: record the attempt unbilled (amount 0) so it still shows in the ledger.
        usage = Usage(
            service="pika",
            provider=PROVIDER,
            operation="animate",
            model=self.endpoint,
            units=Decimal(0),
            unit="second",
            resolution=resolution,
            request_id=submitted.request_id,
            billed=False,
            details={"failed_status": status},
        )
        rid = submitted.request_id
        if isinstance(detail, list):
            items = [d for d in detail if isinstance(d, dict)]
            types = {str(d.get("type", "")) for d in items}
            text = "; ".join(self._describe_detail(d) for d in items) or f"HTTP {status}"
            if "content_policy_violation" in types:
                return PermanentProviderError(
                    f"the video model refused these keyframes: content_policy_violation ({text})",
                    provider=PROVIDER,
                    status_code=status,
                    request_id=rid,
                    usage=usage,
                ), True
            cls = TransientProviderError if retryable else PermanentProviderError
            return cls(
                f"the video provider rejected the request (HTTP {status}): {text}",
                provider=PROVIDER,
                status_code=status,
                request_id=rid,
                usage=usage,
            ), True
        message = short(detail if isinstance(detail, str) else response.reason_phrase)
        if error_type:
            cls = (
                TransientProviderError
                if error_type in _TRANSIENT_ERROR_TYPES or status >= 500 or retryable
                else PermanentProviderError
            )
            return cls(
                f"the video provider failed request {rid}: {error_type} ({message})",
                provider=PROVIDER,
                status_code=status,
                request_id=rid,
                usage=usage,
            ), True
        # A bare gateway error on the result fetch says nothing about the request itself.
        return self._http_error(response, body, what="result", request_id=rid), False

    def _describe_detail(self, item: dict[str, Any]) -> str:
        loc = ".".join(str(x) for x in item.get("loc") or [] if x != "body")
        msg = short(item.get("msg") or item.get("type") or "invalid", 160)
        categories = item.get("categories") or (item.get("ctx") or {}).get("categories")
        extra = (
            f" [{', '.join(map(str, categories))}]"
            if isinstance(categories, list) and categories
            else ""
        )
        return f"{loc + ': ' if loc else ''}{msg}{extra}"

    def _http_error(
        self, response: httpx.Response, body: Any, *, what: str, request_id: str | None = None
    ) -> ProviderError:
        status = response.status_code
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, list):
            detail = "; ".join(self._describe_detail(d) for d in detail if isinstance(d, dict))
        message = short(detail or response.reason_phrase or "")
        if status in (401, 403):
            text = f"the video provider rejected the API key (HTTP {status}): {message}"
        elif status == 429:
            text = f"the video provider is rate limited (HTTP 429): {message}"
        elif status >= 500:
            text = f"the video provider is unavailable at {what} (HTTP {status}): {message}"
        else:
            text = f"the video provider rejected the {what} (HTTP {status}): {message}"
        return status_error(
            status,
            text,
            provider=PROVIDER,
            request_id=request_id,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    def close(self) -> None:
        self._client.close()


class _RequestSpentWith(_RequestSpent):
    """A finished request's failure, kept so a fresh request can replace it on resume."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(str(error))
        self.error = error
