"""The ``gemini`` keyframe judge: one ``generateContent`` call on a Gemini text model.

The product photo and both keyframes go inline, each after a line of text naming it, and
the answer is structured output (``responseMimeType: application/json`` with a
``responseJsonSchema``): ``{"verdict", "garmentMatch", "samePerson", "failedFrames",
"issues"}``. It is priced from ``usageMetadata`` like the image calls (thinking tokens at the
output rate). Same base URL and key as Nano Banana. Refusals, malformed JSON and 5xx/429 are
typed errors like the image client's: an answer that cannot be read never counts as a pass.

No Prefect, tasks, flows or db here (clients layer).
"""

from __future__ import annotations

import base64
import json
import logging
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr

from catwalk.clients._http import json_or_none, short, transport_error
from catwalk.clients.gemini import (
    API_VERSION,
    DEFAULT_BASE_URL,
    PROVIDER,
    REFUSALS,
    GeminiImageGenerator,
)
from catwalk.config import Settings
from catwalk.domain import JudgeRequest, KeyframeVerdict, Pose, Usage
from catwalk.errors import ConfigError, PermanentProviderError, TransientProviderError

logger = logging.getLogger(__name__)

# Bounds on one call, so the worst case can be reserved before the job starts: thinking is
# capped, and thinking plus the answer fit in MAX_OUTPUT_TOKENS (2.5 models count both).
THINKING_BUDGET = 512
MAX_OUTPUT_TOKENS = 1536
# Prompt text plus three images at up to four 258-token tiles each, rounded up.
MAX_INPUT_TOKENS = 4096

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["pass", "fail"]},
        "garmentMatch": {"type": "number", "minimum": 0, "maximum": 1},
        "samePerson": {"type": "number", "minimum": 0, "maximum": 1},
        "failedFrames": {"type": "array", "items": {"type": "string", "enum": ["start", "end"]}},
        "issues": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
    },
    "required": ["verdict", "garmentMatch", "samePerson", "failedFrames", "issues"],
}

INSTRUCTIONS = """You check two keyframes of a product video before the video is made.
Image 1 is the shop's product photo. Image 2 is the START keyframe and image 3 the END keyframe:
a fashion model wearing the product.
For each keyframe decide whether it shows exactly this product: same colour, pattern or print,
logo, cut and length (sleeves, hem). Then decide whether both keyframes show the same person
wearing the same garment.
Answer in JSON only:
- verdict: "pass" only if both keyframes show the product faithfully and the same person;
- garmentMatch: 0-1, how faithfully the worse keyframe shows the product;
- samePerson: 0-1, how sure you are both keyframes show the same person;
- failedFrames: the keyframes ("start", "end") that must be made again (empty on a pass);
- issues: short sentences an admin can read, each naming the frame, e.g.
  "end: the shirt is red, the product is navy" (empty on a pass)."""


class BadAnswer(ValueError):
    """The judge's text is not the verdict asked for."""


def _as_score(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAnswer(f"{name} is not a number")
    if not 0 <= float(value) <= 1:
        raise BadAnswer(f"{name} is outside 0-1")
    return float(value)


def parse_answer(text: str) -> tuple[bool, float, float, tuple[Pose, ...], tuple[str, ...]]:
    """The judge's JSON answer, checked field by field; raises BadAnswer when it is off."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise BadAnswer(f"not JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from exc
    if not isinstance(raw, dict):
        raise BadAnswer("the answer is not a JSON object")
    verdict = raw.get("verdict")
    if verdict not in ("pass", "fail"):
        raise BadAnswer(f"verdict is {verdict!r}, not 'pass' or 'fail'")
    frames = raw.get("failedFrames")
    issues = raw.get("issues")
    if not isinstance(frames, list) or any(f not in ("start", "end") for f in frames):
        raise BadAnswer("failedFrames is not a list of 'start'/'end'")
    if not isinstance(issues, list) or any(not isinstance(i, str) for i in issues):
        raise BadAnswer("issues is not a list of strings")
    garment = _as_score(raw.get("garmentMatch"), "garmentMatch")
    person = _as_score(raw.get("samePerson"), "samePerson")
    failed: tuple[Pose, ...] = tuple(p for p in ("start", "end") if p in frames)  # type: ignore[misc]
    passed = verdict == "pass"
    if passed and failed:
        raise BadAnswer("verdict is 'pass' but failedFrames is not empty")
    if not passed and not failed:
        # A fail that names no frame: make both again rather than guess.
        failed = ("start", "end")
    return passed, garment, person, failed, tuple(short(i, 200) for i in issues if i.strip())


class GeminiKeyframeJudge:
    """Keyframe verdicts from a Gemini text model over httpx."""

    name = PROVIDER

    def __init__(
        self,
        *,
        api_key: SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        model: str = "gemini-2.5-flash",
        timeout_seconds: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key.get_secret_value().strip():
            raise ConfigError("NANO_BANANA_API_KEY is empty")
        self._key = api_key
        self._url = f"{base_url.rstrip('/')}/{API_VERSION}/models/{model}:generateContent"
        self.model = model
        # The image client's error reading (status, RetryInfo, key scrubbing), reused as is.
        self._errors = GeminiImageGenerator(
            api_key=api_key, base_url=base_url, model=model, transport=transport
        )
        self._scrub = self._errors._scrub
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds)),
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
    ) -> GeminiKeyframeJudge:
        if settings.nano_banana_api_key is None:
            raise ConfigError(
                "KEYFRAME_JUDGE=gemini needs NANO_BANANA_API_KEY (a Gemini API key); "
                "set it, or use KEYFRAME_JUDGE=offline"
            )
        return cls(
            api_key=settings.nano_banana_api_key,
            base_url=settings.nano_banana_api_url,
            model=settings.keyframe_judge_model,
            timeout_seconds=settings.provider_http_timeout_seconds,
            transport=transport,
        )

    def request_body(self, request: JudgeRequest) -> dict[str, Any]:
        def image(data: bytes, mime: str) -> dict[str, Any]:
            return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}

        product = f" ({request.product_name})" if request.product_name else ""
        return {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": INSTRUCTIONS},
                        {"text": f"Image 1: the product photo{product}."},
                        image(request.product_image, request.product_image_mime),
                        {"text": "Image 2: the START keyframe."},
                        image(request.start_image, request.image_mime),
                        {"text": "Image 3: the END keyframe."},
                        image(request.end_image, request.image_mime),
                    ],
                }
            ],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": RESPONSE_SCHEMA,
                "temperature": 0,
                "maxOutputTokens": MAX_OUTPUT_TOKENS,
                "thinkingConfig": {"thinkingBudget": THINKING_BUDGET},
            },
        }

    def judge(self, request: JudgeRequest) -> KeyframeVerdict:
        try:
            response = self._client.post(
                self._url,
                json=self.request_body(request),
                headers={"x-goog-api-key": self._key.get_secret_value()},
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, provider=PROVIDER, what="the keyframe judge") from exc
        body = json_or_none(response)
        if response.status_code >= 400:
            error = self._errors._http_error(response, body)
            error.args = (str(error).replace("the image model", "the keyframe judge"),)
            raise error
        if not isinstance(body, dict):
            raise TransientProviderError(
                f"the keyframe judge sent an unreadable answer (HTTP {response.status_code})",
                provider=PROVIDER,
                status_code=response.status_code,
            )
        return self._read(body)

    def usage(self, body: dict[str, Any]) -> Usage:
        meta = body.get("usageMetadata")
        meta = meta if isinstance(meta, dict) else {}
        assumed = not meta
        # Thinking tokens are billed at the output rate. Without usageMetadata (unusual),
        # the call is billed at its bounds rather than recorded as free.
        output = (
            MAX_OUTPUT_TOKENS
            if assumed
            else int(meta.get("candidatesTokenCount") or 0)
            + int(meta.get("thoughtsTokenCount") or 0)
        )
        input_tokens = MAX_INPUT_TOKENS if assumed else int(meta.get("promptTokenCount") or 0)
        details: dict[str, object] = {
            "input_tokens": input_tokens,
            "output_tokens": output,
            "model_version": str(body.get("modelVersion") or ""),
        }
        if assumed:
            details["usage_assumed"] = True
        return Usage(
            service="keyframe_check",
            provider=PROVIDER,
            operation="judge_keyframes",
            model=self.model,
            units=Decimal(output),
            unit="output_token",
            request_id=body.get("responseId"),
            details=details,
        )

    def _read(self, body: dict[str, Any]) -> KeyframeVerdict:
        response_id = body.get("responseId")
        usage = self.usage(body)
        feedback = body.get("promptFeedback") or {}
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            raise PermanentProviderError(
                f"the keyframe judge refused the images: {feedback['blockReason']}",
                provider=PROVIDER,
                request_id=response_id,
                usage=usage,
            )
        candidates = body.get("candidates") or []
        if not candidates or not isinstance(candidates[0], dict):
            raise TransientProviderError(
                "the keyframe judge returned no candidates",
                provider=PROVIDER,
                request_id=response_id,
                usage=usage,
            )
        candidate = candidates[0]
        finish = str(candidate.get("finishReason") or "")
        parts = [
            p for p in ((candidate.get("content") or {}).get("parts") or []) if isinstance(p, dict)
        ]
        text = "".join(str(p["text"]) for p in parts if p.get("text") and not p.get("thought"))
        if finish in REFUSALS:
            raise PermanentProviderError(
                f"the keyframe judge refused the images: {finish}",
                provider=PROVIDER,
                request_id=response_id,
                usage=usage,
            )
        try:
            passed, garment, person, failed, issues = parse_answer(text)
        except ValueError as exc:
            # Truncated (MAX_TOKENS) or off-schema JSON: worth another call, never a pass.
            raise TransientProviderError(
                f"the keyframe judge's answer is not the verdict asked for "
                f"({finish or 'no finish reason'}: {self._scrub(short(exc, 120))})",
                provider=PROVIDER,
                request_id=response_id,
                usage=usage,
            ) from exc
        logger.info(
            "gemini judge %s: %s (garment %.2f, person %.2f), %s output tokens (response %s)",
            self.model,
            "pass" if passed else f"fail {','.join(failed)}",
            garment,
            person,
            usage.units,
            response_id,
        )
        return KeyframeVerdict(
            passed=passed,
            garment_match=garment,
            same_person=person,
            failed_frames=failed,
            issues=tuple(self._scrub(i) for i in issues),
            usage=usage,
            judge=PROVIDER,
        )

    def close(self) -> None:
        self._client.close()
        self._errors.close()
