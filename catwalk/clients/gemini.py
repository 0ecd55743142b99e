"""Nano Banana: keyframes from Google's Gemini image models over the ``generateContent`` REST API.

One request per keyframe: the product photo inline, a prompt naming the model type and the
pose, and an identity description plus ``generationConfig.seed`` derived from the job's
identity seed, so the start and end frames show the same person. Every response shape the
service returns is read (text beside the image, thought parts, prompt blocks, candidate
finish reasons, text-only refusals) and turned into an image or a typed error.

Must not import Prefect, tasks, flows or db.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import random
from decimal import Decimal
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError
from pydantic import SecretStr

from catwalk.clients._http import (
    Scrubber,
    json_or_none,
    parse_duration,
    parse_retry_after,
    short,
    status_error,
    transport_error,
)
from catwalk.config import Settings
from catwalk.domain import GeneratedImage, ImageRequest, Usage
from catwalk.errors import ConfigError, PermanentProviderError, TransientProviderError

logger = logging.getLogger(__name__)

PROVIDER = "gemini"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
# The documented REST version; the SDK's "v1" answers the same for generateContent.
API_VERSION = "v1beta"

# Candidate finish reasons that mean "the model would not draw this": permanent refusals.
REFUSALS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)
# Finish reasons a second attempt often gets past (capacity hiccups on the image head).
RETRYABLE_FINISH = frozenset({"IMAGE_OTHER", "OTHER", "MAX_TOKENS"})
# Gemini 2.5 Flash Image draws at one fixed size (~1K); only the newer models take imageSize.
_FIXED_SIZE_MODELS = frozenset({"gemini-2.5-flash-image", "gemini-2.5-flash-image-preview"})

_HAIR = [
    "short black hair",
    "shoulder-length brown hair",
    "long auburn hair",
    "curly dark hair",
    "straight blond hair",
    "a short grey crop",
    "braided black hair",
    "wavy chestnut hair",
]
_SKIN = ["fair skin", "light olive skin", "medium tan skin", "warm brown skin", "deep brown skin"]
_AGE = ["early twenties", "mid twenties", "around thirty", "mid thirties"]
_FACE = ["an oval face", "high cheekbones", "a round face", "a strong jawline", "freckles"]

POSE_TEXT = {
    "start": (
        "START POSE (first frame of a short product video): standing facing the camera, "
        "weight on both feet, arms relaxed by the sides, full body in frame, slightly left of centre."
    ),
    "end": (
        "END POSE (last frame of the same video): the same person a moment later, turned a "
        "quarter to the right, one hand on the hip, the other arm raised, one step closer to "
        "the camera, slightly right of centre."
    ),
}


def identity_description(model_type: str, seed: int) -> str:
    """A fixed description of the person for a seed: both poses of a job get the same one."""
    rng = random.Random(seed)
    person = "woman" if model_type == "female" else "man"
    return (
        f"a professional fashion {person} in their {rng.choice(_AGE)}, with {rng.choice(_SKIN)}, "
        f"{rng.choice(_HAIR)} and {rng.choice(_FACE)}"
    )


def build_prompt(request: ImageRequest) -> str:
    """The instruction sent beside the product photo for one keyframe."""
    product = f" ({request.product_name})" if request.product_name else ""
    return "\n".join(
        [
            (
                f"Photograph {identity_description(request.model_type, request.identity_seed)} "
                f"wearing the product in the attached photo{product}."
            ),
            "Keep the garment exactly as in the photo: colour, print, logo, cut and fabric.",
            POSE_TEXT[request.pose],
            (
                "Studio e-commerce lighting, plain light backdrop, photorealistic, sharp focus, "
                "no text, no watermark. Return one image."
            ),
        ]
        + (
            # A remake after the keyframe check: say what was wrong with the last attempt.
            ["A previous attempt was rejected; fix this: " + "; ".join(request.feedback)]
            if request.feedback
            else []
        )
    )


def _b64decode(data: str) -> bytes:
    """Base64 in either alphabet (the SDK sends URL-safe; the REST docs use standard)."""
    normalized = data.strip().replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    return base64.b64decode(normalized, validate=True)


def _inline(part: dict[str, Any]) -> dict[str, Any] | None:
    blob = part.get("inlineData", part.get("inline_data"))
    return blob if isinstance(blob, dict) else None


class GeminiImageGenerator:
    """Keyframes from a Gemini image model ("Nano Banana") over httpx."""

    name = PROVIDER

    def __init__(
        self,
        *,
        api_key: SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        model: str = "gemini-2.5-flash-image",
        aspect_ratio: str = "9:16",
        image_size: str = "1K",
        timeout_seconds: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key.get_secret_value().strip():
            raise ConfigError("NANO_BANANA_API_KEY is empty")
        self._key = api_key
        self._url = f"{base_url.rstrip('/')}/{API_VERSION}/models/{model}:generateContent"
        self.model = model
        self._aspect_ratio = aspect_ratio
        self._image_size = image_size
        self._scrub = Scrubber(api_key.get_secret_value())
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds)),
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
    ) -> GeminiImageGenerator:
        if settings.nano_banana_api_key is None:
            raise ConfigError(
                "IMAGE_PROVIDER=nano-banana needs NANO_BANANA_API_KEY (a Gemini API key); "
                "set it, or use IMAGE_PROVIDER=offline"
            )
        return cls(
            api_key=settings.nano_banana_api_key,
            base_url=settings.nano_banana_api_url,
            model=settings.nano_banana_model,
            aspect_ratio=settings.image_aspect_ratio,
            image_size=settings.image_size,
            timeout_seconds=settings.provider_http_timeout_seconds,
            transport=transport,
        )

    def request_body(self, request: ImageRequest) -> dict[str, Any]:
        """The documented REST form (camelCase, standard base64)."""
        image_config: dict[str, str] = {"aspectRatio": self._aspect_ratio}
        if self.model not in _FIXED_SIZE_MODELS:
            image_config["imageSize"] = self._image_size
        return {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {
                            "inlineData": {
                                "mimeType": request.product_image_mime,
                                "data": base64.b64encode(request.product_image).decode("ascii"),
                            }
                        },
                        {"text": build_prompt(request)},
                    ],
                }
            ],
            "generationConfig": {
                # TEXT too, so a refusal comes back in words an admin can read.
                "responseModalities": ["TEXT", "IMAGE"],
                "imageConfig": image_config,
                # Same seed for both poses: one more nudge towards the same person.
                "seed": request.identity_seed % 2**31,
            },
        }

    def generate(self, request: ImageRequest) -> GeneratedImage:
        try:
            response = self._client.post(
                self._url,
                json=self.request_body(request),
                headers={"x-goog-api-key": self._key.get_secret_value()},
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, provider=PROVIDER, what="the image model") from exc
        body = json_or_none(response)
        if response.status_code >= 400:
            raise self._http_error(response, body)
        if not isinstance(body, dict):
            raise TransientProviderError(
                f"the image model sent an unreadable answer (HTTP {response.status_code})",
                provider=PROVIDER,
                status_code=response.status_code,
            )
        return self._read(body, pose=request.pose)

    def _usage(self, body: dict[str, Any], *, images: int) -> Usage | None:
        meta = body.get("usageMetadata")
        if not isinstance(meta, dict):
            return None
        # Thinking tokens are billed at the output rate, like the image tokens.
        output = int(meta.get("candidatesTokenCount") or 0) + int(
            meta.get("thoughtsTokenCount") or 0
        )
        return Usage(
            service="nano_banana",
            provider=PROVIDER,
            operation="generate_image",
            # The configured id, which prices.toml knows; the served version goes in details.
            model=self.model,
            units=Decimal(output),
            unit="output_token",
            resolution=self._image_size,
            request_id=body.get("responseId"),
            details={
                "input_tokens": int(meta.get("promptTokenCount") or 0),
                "output_tokens": output,
                "images": images,
                "model_version": str(body.get("modelVersion") or ""),
            },
        )

    def _read(self, body: dict[str, Any], *, pose: str) -> GeneratedImage:
        response_id = body.get("responseId")
        feedback = body.get("promptFeedback") or {}
        candidates = body.get("candidates") or []
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            reason = str(feedback["blockReason"])
            extra = feedback.get("blockReasonMessage")
            raise PermanentProviderError(
                f"the image model refused this photo: {reason}"
                + (f" ({short(extra)})" if extra else ""),
                provider=PROVIDER,
                request_id=response_id,
                usage=self._usage(body, images=0),
            )
        if not candidates or not isinstance(candidates[0], dict):
            raise TransientProviderError(
                "the image model returned no candidates",
                provider=PROVIDER,
                request_id=response_id,
                usage=self._usage(body, images=0),
            )
        candidate = candidates[0]
        finish = str(candidate.get("finishReason") or "")
        content = candidate.get("content") or {}
        parts = [p for p in (content.get("parts") or []) if isinstance(p, dict)]
        final = [p for p in parts if not p.get("thought")]
        images = [blob for p in final if (blob := _inline(p)) and blob.get("data")]
        texts = [str(p["text"]) for p in final if p.get("text")]
        said = f": {short(' '.join(texts))}" if texts else ""
        note = candidate.get("finishMessage")
        why = f" ({short(note)})" if note else said

        if not images:
            usage = self._usage(body, images=0)
            if finish in REFUSALS:
                raise PermanentProviderError(
                    f"the image model refused this photo: {finish}{why}",
                    provider=PROVIDER,
                    request_id=response_id,
                    usage=usage,
                )
            if finish in RETRYABLE_FINISH:
                raise TransientProviderError(
                    f"the image model stopped without an image: {finish}{why}",
                    provider=PROVIDER,
                    request_id=response_id,
                    usage=usage,
                )
            if texts:
                # A prose answer with finishReason STOP: the model declined in words.
                raise PermanentProviderError(
                    f"the image model refused this photo and answered with text{said}",
                    provider=PROVIDER,
                    request_id=response_id,
                    usage=usage,
                )
            raise PermanentProviderError(
                f"the image model returned no image ({finish or 'no finish reason'})",
                provider=PROVIDER,
                request_id=response_id,
                usage=usage,
            )

        # The last non-thought image is the final one (Gemini 3 may draw drafts first).
        blob = images[-1]
        usage = self._usage(body, images=1) or self._assumed_usage(response_id)
        try:
            data = _b64decode(str(blob["data"]))
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
        except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as exc:
            raise TransientProviderError(
                "the image model sent image data that does not decode",
                provider=PROVIDER,
                request_id=response_id,
                usage=usage,
            ) from exc
        mime = str(blob.get("mimeType") or blob.get("mime_type") or "image/png")
        logger.info(
            "gemini %s: %s keyframe, %d bytes, %s output tokens (response %s)",
            self.model,
            pose,
            len(data),
            usage.units,
            response_id,
        )
        return GeneratedImage(data=data, mime_type=mime, usage=usage)

    def _assumed_usage(self, response_id: str | None) -> Usage:
        # No usageMetadata on a success is unusual; bill the documented 1290 tokens per image
        # rather than recording a free image.
        return Usage(
            service="nano_banana",
            provider=PROVIDER,
            operation="generate_image",
            model=self.model,
            units=Decimal(1290),
            unit="output_token",
            resolution=self._image_size,
            request_id=response_id,
            details={"images": 1, "output_tokens": 1290, "usage_assumed": True},
        )

    def _http_error(self, response: httpx.Response, body: Any) -> Exception:
        status = response.status_code
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        canonical = str(error.get("status") or "")
        message = short(error.get("message") or response.reason_phrase or "")
        details = [d for d in (error.get("details") or []) if isinstance(d, dict)]
        reasons = {str(d.get("reason")) for d in details if d.get("reason")}
        retry_after = next(
            (
                parse_duration(d.get("retryDelay"))
                for d in details
                if str(d.get("@type", "")).endswith("google.rpc.RetryInfo")
            ),
            None,
        )
        if retry_after is None:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        label = f"HTTP {status}{' ' + canonical if canonical else ''}"
        if "API_KEY_INVALID" in reasons or status in (401, 403):
            text = f"the image provider rejected the API key ({label}): {message}"
        elif status == 404:
            text = f"the image model {self.model!r} is not available ({label}): {message}"
        elif status == 429:
            text = f"the image model is rate limited ({label}): {message}"
        elif status >= 500:
            text = f"the image model is unavailable ({label}): {message}"
        else:
            text = f"the image model rejected the request ({label}): {message}"
        return status_error(status, text, provider=PROVIDER, retry_after=retry_after)

    def close(self) -> None:
        self._client.close()
