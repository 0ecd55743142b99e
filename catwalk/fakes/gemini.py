"""A fake Gemini API (``generateContent`` for the image models), as a small Starlette app.

It answers what the real service answers (PROVIDERS.md §0-1): ``/v1/`` and ``/v1beta/``
paths; the key in ``x-goog-api-key`` or ``?key=``; request parts in camelCase or snake_case
with standard or URL-safe base64; camelCase responses with text beside the image, thought
parts for the Gemini 3 models, ``usageMetadata`` (1290 output tokens per image), Google's
error bodies. The images are real: the offline composer draws the model wearing the photo.

Misbehaviour on demand (constructor ``faults=`` or ``POST /_fake/faults``):
``latency`` (``seconds``), ``rate_limit`` (429 with RetryInfo ``retry_delay``, optional
``retry_after`` header), ``unavailable`` (503), ``internal`` (500), ``bad_request`` (400),
``prompt_block`` (200, ``promptFeedback.blockReason``), ``image_safety`` (200, candidate
``finishReason``, default IMAGE_SAFETY), ``text_only`` (200, a prose refusal), ``malformed``
(200 with a body that is not JSON), ``bad_image`` (200 with image data that does not decode).

Keyframe judge requests (a text model such as ``gemini-2.5-flash``, structured JSON output)
are answered from what the fake knows: every keyframe it draws carries a PNG text chunk
naming the product photo, pose and seed, so it passes a pair it drew from this product photo
for one person and fails any other frame with a readable issue. Judge-only faults:
``judge_fail`` (``extra: {"frames": ["end"], "issue": "..."}``: judge those frames failing)
and ``judge_malformed`` (200 with an answer that is not the schema's JSON).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import threading
import time
import uuid
import zlib
from typing import Any

from PIL import Image, ImageOps, PngImagePlugin
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from catwalk.clients.offline import compose_keyframe
from catwalk.fakes._faults import Fault, FaultQueue

MODELS = frozenset(
    {"gemini-2.5-flash-image", "gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview"}
)
# Text models that answer keyframe-judge requests (no image output).
JUDGE_MODELS = frozenset({"gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"})
JUDGE_KINDS = frozenset({"judge_fail", "judge_malformed"})
MARKER = "catwalk-fake-gemini"
ASPECT_RATIOS = frozenset(
    {
        "1:1",
        "2:3",
        "3:2",
        "3:4",
        "4:3",
        "4:5",
        "5:4",
        "9:16",
        "16:9",
        "21:9",
        "1:4",
        "4:1",
        "1:8",
        "8:1",
    }
)
IMAGE_SIZES = frozenset({"1K", "2K", "4K", "512"})
KINDS = frozenset(
    {
        "latency",
        "rate_limit",
        "unavailable",
        "internal",
        "bad_request",
        "prompt_block",
        "image_safety",
        "text_only",
        "malformed",
        "bad_image",
    }
    | JUDGE_KINDS
)
IMAGE_TOKENS = 1290
INPUT_IMAGE_TOKENS = 258
_MALE = re.compile(r"\b(man|male|men)\b", re.IGNORECASE)


def _error(
    code: int,
    status: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "status": status}}
    if details:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=code, headers=headers)


def _b64decode(data: str) -> bytes:
    normalized = data.strip().replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    return base64.b64decode(normalized, validate=True)


class FakeGemini:
    """State and behaviour of one fake Gemini API; ``app`` is the ASGI app."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        faults: list[Fault] | None = None,
        latency_seconds: float = 0.0,
        width: int = 192,
    ) -> None:
        self.api_key = api_key
        self.latency_seconds = latency_seconds
        self.width = width
        self.faults = FaultQueue(faults, kinds=KINDS)
        self._lock = threading.Lock()
        self.calls = 0
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/{version}/models/{model_action}", self._generate, methods=["POST"]),
                Route("/_fake/faults", self._add_faults, methods=["POST"]),
                Route("/_fake/state", self._state, methods=["GET"]),
                Route("/_fake/reset", self._reset, methods=["POST"]),
            ]
        )

    def add_fault(self, kind: str, **options: Any) -> None:
        self._add(Fault(kind=kind, **options))

    def _add(self, fault: Fault) -> None:
        # A judge fault left on "any" must not be spent by an image request.
        if fault.kind in JUDGE_KINDS and fault.on == "any":
            fault.on = "judge"
        self.faults.add(fault)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self.calls,
                "judge_calls": sum(1 for r in self.requests if r["model"] in JUDGE_MODELS),
                "requests": list(self.requests),
                "pending_faults": self.faults.pending(),
            }

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
        """Forget faults, counts and recorded requests."""
        self.faults.clear()
        with self._lock:
            self.calls = 0
            self.requests.clear()

    # The API.
    async def _generate(self, request: Request) -> Response:
        # Read the body on the event loop, then draw in a worker thread (Pillow is blocking).
        raw = await request.body()
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        return await run_in_threadpool(
            self._generate_sync,
            request.path_params["version"],
            request.path_params["model_action"],
            key,
            raw,
        )

    def _generate_sync(
        self, version: str, model_action: str, key: str | None, raw: bytes
    ) -> Response:
        model, _, action = model_action.partition(":")
        if version not in ("v1", "v1beta") or action != "generateContent":
            return _error(
                404, "NOT_FOUND", f"Method {action or model} not found for API version {version}."
            )
        if not key:
            return _error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if self.api_key is not None and key != self.api_key:
            return _error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        with self._lock:
            self.calls += 1
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        judging = model in JUDGE_MODELS
        fault = self._next_fault("judge" if judging else "generate")
        if model not in MODELS and not judging:
            return _error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {version}, or is not supported for "
                "generateContent. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        parsed = self._parse(body)
        if isinstance(parsed, Response):
            return parsed
        with self._lock:
            self.requests.append({"model": model, "version": version, **parsed["summary"]})
        if judging:
            return self._judge(model, body, parsed, fault)
        if fault is not None:
            return self._misbehave(fault, model, parsed)
        return JSONResponse(self._answer(model, parsed))

    def _next_fault(self, on: str = "generate") -> Fault | None:
        while (fault := self.faults.take(on)) is not None:
            if fault.kind != "latency":
                return fault
            time.sleep(fault.seconds)
        return None

    def _parse(self, body: Any) -> dict[str, Any] | Response:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("contents"), list)
            or not body["contents"]
        ):
            return _error(
                400,
                "INVALID_ARGUMENT",
                "* GenerateContentRequest.contents: contents is not specified",
            )
        texts: list[str] = []
        images: list[bytes] = []
        spellings: set[str] = set()
        alphabets: set[str] = set()
        for content in body["contents"]:
            if isinstance(content, str):
                texts.append(content)
                continue
            for part in (content or {}).get("parts") or []:
                if not isinstance(part, dict):
                    continue
                if "text" in part:
                    texts.append(str(part["text"]))
                spelling = (
                    "inlineData"
                    if "inlineData" in part
                    else "inline_data"
                    if "inline_data" in part
                    else None
                )
                if spelling is None:
                    continue
                blob = part[spelling] or {}
                mime_key = "mimeType" if "mimeType" in blob else "mime_type"
                spellings.add(f"{spelling}.{mime_key}")
                data = str(blob.get("data", ""))
                alphabets.add("urlsafe" if ("-" in data or "_" in data) else "standard")
                try:
                    raw = _b64decode(data)
                    with Image.open(io.BytesIO(raw)) as img:
                        img.load()
                except (binascii.Error, ValueError, OSError):
                    return _error(
                        400,
                        "INVALID_ARGUMENT",
                        "Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
                    )
                images.append(raw)
        config = body.get("generationConfig", body.get("generation_config")) or {}
        image_config = config.get("imageConfig", config.get("image_config")) or {}
        ratio = image_config.get("aspectRatio", image_config.get("aspect_ratio")) or "1:1"
        size = image_config.get("imageSize", image_config.get("image_size")) or "1K"
        if ratio not in ASPECT_RATIOS:
            return _error(
                400,
                "INVALID_ARGUMENT",
                f"Invalid value at 'generation_config.image_config.aspect_ratio' ({ratio})",
            )
        if size not in IMAGE_SIZES:
            return _error(
                400,
                "INVALID_ARGUMENT",
                f"Invalid value at 'generation_config.image_config.image_size' ({size})",
            )
        modalities = [
            str(m).upper()
            for m in config.get("responseModalities", config.get("response_modalities"))
            or ["TEXT", "IMAGE"]
        ]
        prompt = "\n".join(texts)
        seed = config.get("seed")
        return {
            "prompt": prompt,
            "images": images,
            "ratio": ratio,
            "modalities": modalities,
            "seed": int(seed) if isinstance(seed, int) else zlib.crc32(prompt.encode()),
            "summary": {
                "spellings": sorted(spellings),
                "alphabets": sorted(alphabets),
                "aspect_ratio": ratio,
                "image_size": size,
                "images": len(images),
                "prompt": prompt,
                "seed": seed,
            },
        }

    def _draw(self, parsed: dict[str, Any], *, draft: bool = False) -> bytes:
        prompt = parsed["prompt"]
        pose = (
            "end" if re.search(r"\bend pose\b|\blast frame\b", prompt, re.IGNORECASE) else "start"
        )
        model_type = "male" if _MALE.search(prompt) else "female"
        if parsed["images"]:
            product = Image.open(io.BytesIO(parsed["images"][0])).convert("RGB")
            # The composer's cut-out is pure-Python per pixel: a thumbnail keeps the fake quick.
            product.thumbnail((256, 256))  # wider than the torso it is worn on
        else:
            product = Image.new("RGB", (64, 64), (120, 120, 130))
        frame = compose_keyframe(
            product,
            pose=pose,
            model_type=model_type,
            seed=parsed["seed"],
            width=self.width,
            label="fake gemini",
        )
        w_ratio, h_ratio = (int(x) for x in parsed["ratio"].split(":"))
        height = max(2, round(self.width * h_ratio / w_ratio))
        frame = ImageOps.fit(frame, (self.width, height))
        if draft:
            frame = ImageOps.grayscale(frame).convert("RGB")
        # Signed, so the judge recognises its own keyframes: which photo, pose and person.
        info = PngImagePlugin.PngInfo()
        product_crc = zlib.crc32(parsed["images"][0]) if parsed["images"] else None
        info.add_text(
            MARKER, json.dumps({"product": product_crc, "pose": pose, "seed": parsed["seed"]})
        )
        out = io.BytesIO()
        frame.save(out, format="PNG", pnginfo=info)
        return out.getvalue()

    def _usage(self, parsed: dict[str, Any], *, output: int, thoughts: int = 0) -> dict[str, Any]:
        text_tokens = max(1, len(parsed["prompt"]) // 4)
        image_tokens = INPUT_IMAGE_TOKENS * len(parsed["images"])
        usage: dict[str, Any] = {
            "promptTokenCount": text_tokens + image_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": text_tokens + image_tokens + output + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": text_tokens}]
            + ([{"modality": "IMAGE", "tokenCount": image_tokens}] if image_tokens else []),
        }
        if output:
            usage["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": output}]
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage

    def _answer(self, model: str, parsed: dict[str, Any]) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        thoughts = 0
        if model.startswith("gemini-3"):
            # Gemini 3 image models think first, sometimes drawing a draft: clients must skip it.
            thoughts = 180
            parts.append(
                {
                    "text": "**Composing the shot**\nPlacing the model and the garment.",
                    "thought": True,
                }
            )
            parts.append(
                {
                    "inlineData": {
                        "mimeType": "image/png",
                        "data": base64.b64encode(self._draw(parsed, draft=True)).decode(),
                    },
                    "thought": True,
                }
            )
        if "IMAGE" not in parsed["modalities"]:
            parts.append({"text": "I can describe the photo, but image output was not requested."})
            return self._envelope(
                model, parts, "STOP", self._usage(parsed, output=20, thoughts=thoughts)
            )
        image = base64.b64encode(self._draw(parsed)).decode()
        parts.append({"text": "Here is the photo you asked for."})
        final: dict[str, Any] = {"inlineData": {"mimeType": "image/png", "data": image}}
        if thoughts:
            final["thoughtSignature"] = base64.b64encode(uuid.uuid4().bytes).decode()
        parts.append(final)
        return self._envelope(
            model, parts, "STOP", self._usage(parsed, output=IMAGE_TOKENS, thoughts=thoughts)
        )

    def _envelope(
        self,
        model: str,
        parts: list[dict[str, Any]] | None,
        finish: str,
        usage: dict[str, Any],
        finish_message: str | None = None,
    ) -> dict[str, Any]:
        content: dict[str, Any] = {"role": "model"}
        if parts:
            content["parts"] = parts
        candidate: dict[str, Any] = {"content": content, "finishReason": finish, "index": 0}
        if finish_message:
            candidate["finishMessage"] = finish_message
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:22],
        }

    @staticmethod
    def _marker(image: bytes) -> dict[str, Any] | None:
        try:
            with Image.open(io.BytesIO(image)) as img:
                raw = img.info.get(MARKER) if isinstance(img.info, dict) else None
            return json.loads(raw) if raw else None
        except (OSError, ValueError):
            return None

    def _judge(
        self, model: str, body: dict[str, Any], parsed: dict[str, Any], fault: Fault | None
    ) -> Response:
        """Answer a keyframe-judge request: product photo, start and end keyframe inline."""
        if fault is not None and fault.kind not in JUDGE_KINDS:
            if fault.kind in ("image_safety", "text_only", "bad_image"):
                fault = Fault(kind="judge_malformed")  # no image to refuse: an unusable answer
            else:
                return self._misbehave(fault, model, parsed)
        config = body.get("generationConfig", body.get("generation_config")) or {}
        mime = config.get("responseMimeType", config.get("response_mime_type"))
        schema = config.get("responseJsonSchema", config.get("response_json_schema"))
        usage = self._usage(parsed, output=0)
        if len(parsed["images"]) != 3:
            text = "Please send the product photo and the two keyframes."
            return JSONResponse(self._envelope(model, [{"text": text}], "STOP", usage))
        product, *frames = parsed["images"]
        crc = zlib.crc32(product)
        failed: list[str] = []
        issues: list[str] = []
        marks = [self._marker(frame) for frame in frames]
        for pose, mark in zip(("start", "end"), marks, strict=True):
            if mark is None:
                failed.append(pose)
                issues.append(f"{pose}: this is not a keyframe of the product photo")
            elif mark.get("product") != crc:
                failed.append(pose)
                issues.append(f"{pose}: the garment is not the product in the photo")
            elif mark.get("pose") != pose:
                failed.append(pose)
                issues.append(f"{pose}: the model is not in the {pose} pose")
        same = all(marks) and marks[0].get("seed") == marks[1].get("seed")  # type: ignore[union-attr]
        if all(marks) and not same and "end" not in failed:
            failed.append("end")
            issues.append("end: a different person from the start frame")
        if fault is not None and fault.kind == "judge_fail":
            for pose in fault.extra.get("frames") or [fault.reason or "end"]:
                if pose not in failed:
                    failed.append(pose)
                issues.append(
                    fault.extra.get("issue")
                    or f"{pose}: the garment colour differs from the product photo"
                )
        answer = {
            "verdict": "fail" if failed else "pass",
            "garmentMatch": 0.35 if failed else 0.94,
            "samePerson": 0.97 if same else 0.2,
            "failedFrames": [p for p in ("start", "end") if p in failed],
            "issues": issues,
        }
        if fault is not None and fault.kind == "judge_malformed":
            text = fault.extra.get("text") or '{"verdict": "pass", "garmentMatch": '
        elif mime == "application/json" and schema:
            text = json.dumps(answer)
        else:
            # Without structured output a model answers in prose (what clients must refuse).
            text = f"Verdict: {answer['verdict']}. " + " ".join(issues)
        usage = self._usage(parsed, output=max(1, len(text) // 4), thoughts=120)
        usage.pop("candidatesTokensDetails", None)
        return JSONResponse(self._envelope(model, [{"text": text}], "STOP", usage))

    def _misbehave(self, fault: Fault, model: str, parsed: dict[str, Any]) -> Response:
        kind = fault.kind
        if kind == "rate_limit":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return _error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                                "quotaDimensions": {"model": model, "location": "global"},
                                "quotaValue": "10",
                            }
                        ],
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": fault.retry_delay,
                    },
                ],
                headers=headers,
            )
        if kind == "unavailable":
            return _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if kind == "internal":
            return _error(
                500,
                "INTERNAL",
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            )
        if kind == "bad_request":
            return _error(
                400, "INVALID_ARGUMENT", fault.reason or "Request contains an invalid argument."
            )
        if kind == "malformed":
            return Response(
                '{"candidates": [{"content": {"parts": [', media_type="application/json"
            )
        if kind == "prompt_block":
            return JSONResponse(
                {
                    "promptFeedback": {"blockReason": fault.reason or "PROHIBITED_CONTENT"},
                    "usageMetadata": self._usage(parsed, output=0),
                    "modelVersion": model,
                    "responseId": uuid.uuid4().hex[:22],
                }
            )
        if kind == "image_safety":
            reason = fault.reason or "IMAGE_SAFETY"
            return JSONResponse(
                self._envelope(
                    model,
                    None,
                    reason,
                    self._usage(parsed, output=0),
                    finish_message="The model output could not be generated because it may violate Google's policies.",
                )
            )
        if kind == "text_only":
            text = (
                fault.extra.get("text")
                or "I can't create images of real people in that outfit. Try a different photo."
            )
            return JSONResponse(
                self._envelope(model, [{"text": text}], "STOP", self._usage(parsed, output=24))
            )
        if kind == "bad_image":
            return JSONResponse(
                self._envelope(
                    model,
                    [
                        {
                            "inlineData": {
                                "mimeType": "image/png",
                                "data": base64.b64encode(b"not a png").decode(),
                            }
                        }
                    ],
                    "STOP",
                    self._usage(parsed, output=IMAGE_TOKENS),
                )
            )
        raise ValueError(f"unhandled fault {kind}")
