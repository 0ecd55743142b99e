"""GeminiImageGenerator over real HTTP: against the fake Gemini API, and against
pytest-httpserver where a scripted one-off reply is simpler. Every response shape and every
error class, plus the official google-genai SDK getting an image from the fake."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import io
import json
import socket
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from PIL import Image
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from catwalk import pricing
from catwalk.clients._http import parse_duration, parse_retry_after
from catwalk.clients.gemini import GeminiImageGenerator, build_prompt, identity_description
from catwalk.config import Settings
from catwalk.domain import ImageRequest
from catwalk.errors import ConfigError, PermanentProviderError, TransientProviderError
from catwalk.fakes import FakeGemini, RunningServer, serve_in_thread

KEY = "gm-test-key-7c1f0e5a"


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeGemini, RunningServer]]:
    gemini = FakeGemini(api_key=KEY, width=96)
    with serve_in_thread(gemini.app) as server:
        yield gemini, server


@pytest.fixture
def gemini(fake: tuple[FakeGemini, RunningServer]) -> FakeGemini:
    fake[0].reset()
    return fake[0]


@pytest.fixture
def url(fake: tuple[FakeGemini, RunningServer]) -> str:
    return fake[1].url


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (60, 80), (180, 40, 60)).save(out, format="JPEG")
    return out.getvalue()


def _request(pose: str = "start", *, seed: int = 1234, model_type: str = "female") -> ImageRequest:
    return ImageRequest(
        product_image=_photo(),
        product_image_mime="image/jpeg",
        model_type=model_type,  # type: ignore[arg-type]
        pose=pose,
        identity_seed=seed,
        product_name="Red tee",  # type: ignore[arg-type]
    )


def _client(
    base_url: str, *, model: str = "gemini-2.5-flash-image", key: str = KEY, **kw: object
) -> GeminiImageGenerator:
    return GeminiImageGenerator(api_key=SecretStr(key), base_url=base_url, model=model, **kw)  # type: ignore[arg-type]


def test_flash_image_both_poses_same_identity(gemini: FakeGemini, url: str) -> None:
    client = _client(url)
    start = client.generate(_request("start"))
    end = client.generate(_request("end"))
    for result in (start, end):
        with Image.open(io.BytesIO(result.data)) as img:
            assert img.format == "PNG"
            assert (
                abs(img.width / img.height - 9 / 16) < 0.01
            )  # 9:16 from settings reached the model
        assert result.usage.units == Decimal(1290)
        assert result.usage.unit == "output_token"
        assert result.usage.details["images"] == 1
    sent = gemini.state()["requests"]
    assert [r["version"] for r in sent] == ["v1beta", "v1beta"]
    assert sent[0]["spellings"] == ["inlineData.mimeType"] and sent[0]["images"] == 1
    assert sent[0]["aspect_ratio"] == "9:16"
    # Same seed and the same person described in both prompts; different poses.
    assert sent[0]["seed"] == sent[1]["seed"] == 1234
    person = identity_description("female", 1234)
    assert person in sent[0]["prompt"] and person in sent[1]["prompt"]
    assert "START POSE" in sent[0]["prompt"] and "END POSE" in sent[1]["prompt"]
    assert start.data != end.data
    # Input tokens are what the fake reported: 258 per image plus the prompt's text.
    expected_input = 258 + len(build_prompt(_request("start"))) // 4
    assert start.usage.details["input_tokens"] == expected_input


def test_identity_is_fixed_per_seed_and_varies_across_jobs() -> None:
    assert identity_description("male", 77) == identity_description("male", 77)
    assert len({identity_description("female", seed) for seed in range(20)}) > 10
    assert "woman" in identity_description("female", 1) and "man" in identity_description("male", 1)


def test_gemini3_thought_parts_are_skipped_and_priced_per_image(
    gemini: FakeGemini, url: str
) -> None:
    client = _client(url, model="gemini-3-pro-image-preview", image_size="2K")
    result = client.generate(_request())
    with Image.open(io.BytesIO(result.data)) as img:
        rgb = img.convert("RGB")
    # The fake's thought draft is greyscale; the final image has colour.
    assert any(r != g or g != b for r, g, b in rgb.get_flattened_data())
    assert result.usage.units == Decimal(1290 + 180)  # thinking billed at the output rate
    assert gemini.state()["requests"][0]["image_size"] == "2K"
    charge = pricing.charge_for(result.usage, on=dt.date(2026, 6, 1), settings=Settings())
    input_tokens = Decimal(result.usage.details["input_tokens"])  # type: ignore[arg-type]
    assert charge.amount == (Decimal("0.134") + input_tokens * Decimal("0.000002")).quantize(
        Decimal("0.000001")
    )


def test_flash_image_is_priced_per_output_token(url: str, gemini: FakeGemini) -> None:
    result = _client(url).generate(_request())
    charge = pricing.charge_for(result.usage, on=dt.date(2026, 6, 1), settings=Settings())
    input_tokens = Decimal(result.usage.details["input_tokens"])  # type: ignore[arg-type]
    expected = Decimal(1290) * Decimal("0.00003") + input_tokens * Decimal("0.0000003")
    assert charge.amount == expected.quantize(Decimal("0.000001"))


@pytest.mark.parametrize(
    ("kind", "options", "error", "text"),
    [
        (
            "prompt_block",
            {},
            PermanentProviderError,
            "the image model refused this photo: PROHIBITED_CONTENT",
        ),
        (
            "image_safety",
            {},
            PermanentProviderError,
            "the image model refused this photo: IMAGE_SAFETY",
        ),
        (
            "image_safety",
            {"reason": "IMAGE_PROHIBITED_CONTENT"},
            PermanentProviderError,
            "refused this photo: IMAGE_PROHIBITED_CONTENT",
        ),
        ("text_only", {}, PermanentProviderError, "answered with text: I can't create images"),
        ("malformed", {}, TransientProviderError, "unreadable answer"),
        ("bad_image", {}, TransientProviderError, "does not decode"),
        (
            "rate_limit",
            {"retry_delay": "28s"},
            TransientProviderError,
            "rate limited (HTTP 429 RESOURCE_EXHAUSTED)",
        ),
        ("unavailable", {}, TransientProviderError, "unavailable (HTTP 503 UNAVAILABLE)"),
        ("internal", {}, TransientProviderError, "unavailable (HTTP 500 INTERNAL)"),
        (
            "bad_request",
            {},
            PermanentProviderError,
            "rejected the request (HTTP 400 INVALID_ARGUMENT)",
        ),
    ],
)
def test_fault_shapes(
    gemini: FakeGemini,
    url: str,
    kind: str,
    options: dict[str, object],
    error: type[Exception],
    text: str,
) -> None:
    gemini.add_fault(kind, **options)
    with pytest.raises(error) as info:
        _client(url).generate(_request())
    assert text in str(info.value)
    assert KEY not in str(info.value)
    assert type(info.value) is error  # exactly transient or permanent, nothing vaguer


def test_safety_blocks_carry_their_billed_usage(gemini: FakeGemini, url: str) -> None:
    gemini.add_fault("image_safety")
    with pytest.raises(PermanentProviderError) as info:
        _client(url).generate(_request())
    usage = info.value.usage
    assert usage is not None and usage.units == 0 and usage.details["images"] == 0
    assert usage.details["input_tokens"] > 0  # type: ignore[operator]
    charge = pricing.charge_for(usage, on=dt.date(2026, 6, 1), settings=Settings())
    assert charge.amount > 0  # the prompt was billed even though no image came back


def test_rate_limit_honours_retry_info(gemini: FakeGemini, url: str) -> None:
    gemini.add_fault("rate_limit", retry_delay="28s")
    with pytest.raises(TransientProviderError) as info:
        _client(url).generate(_request())
    assert info.value.retry_after_seconds == 28.0
    assert info.value.status_code == 429


def test_bad_key_and_unknown_model_are_permanent(gemini: FakeGemini, url: str) -> None:
    with pytest.raises(PermanentProviderError, match="rejected the API key") as info:
        _client(url, key="wrong-key-value").generate(_request())
    assert "wrong-key-value" not in str(info.value)
    with pytest.raises(
        PermanentProviderError, match="'gemini-1.0-imagen' is not available"
    ) as info:
        _client(url, model="gemini-1.0-imagen").generate(_request())
    assert info.value.status_code == 404


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientProviderError, match="could not be reached"):
        _client(f"http://127.0.0.1:{port}").generate(_request())


def test_timeout_is_transient(gemini: FakeGemini, url: str) -> None:
    gemini.add_fault("latency", seconds=1.0)
    with pytest.raises(TransientProviderError, match="timed out"):
        _client(url, timeout_seconds=0.2).generate(_request())
    # Let the abandoned request finish server-side so it cannot land in the next test's state.
    for _ in range(500):
        if gemini.state()["requests"]:
            break
        time.sleep(0.01)


def _png_b64() -> str:
    out = io.BytesIO()
    Image.new("RGB", (9, 16), (1, 2, 3)).save(out, format="PNG")
    return base64.urlsafe_b64encode(out.getvalue()).decode()


PATH = "/v1beta/models/gemini-2.5-flash-image:generateContent"


def test_scripted_shapes_from_the_wild(httpserver: HTTPServer) -> None:
    """Shapes the fake does not produce by default: URL-safe data, snake_case, IMAGE_OTHER,
    no candidates, a Retry-After header without RetryInfo."""
    client = _client(httpserver.url_for("/"))
    httpserver.expect_oneshot_request(
        PATH, method="POST", headers={"x-goog-api-key": KEY}
    ).respond_with_json(
        {
            "candidates": [
                {
                    "content": {
                        "parts": [{"inline_data": {"mime_type": "image/png", "data": _png_b64()}}]
                    },
                    "finishReason": "STOP",
                }
            ],
        }
    )
    image = client.generate(_request())
    assert Image.open(io.BytesIO(image.data)).size == (9, 16)
    assert image.usage.details.get("usage_assumed") is True  # no usageMetadata: bill 1290 anyway

    httpserver.expect_oneshot_request(PATH).respond_with_json(
        {
            "candidates": [{"content": {"role": "model"}, "finishReason": "IMAGE_OTHER"}],
            "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 0},
        }
    )
    with pytest.raises(TransientProviderError, match="IMAGE_OTHER") as info:
        client.generate(_request())
    assert info.value.usage is not None

    httpserver.expect_oneshot_request(PATH).respond_with_json(
        {"usageMetadata": {"promptTokenCount": 5}}
    )
    with pytest.raises(TransientProviderError, match="no candidates"):
        client.generate(_request())

    httpserver.expect_oneshot_request(PATH).respond_with_json(
        {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}},
        status=429,
        headers={"Retry-After": "12"},
    )
    with pytest.raises(TransientProviderError) as info:
        client.generate(_request())
    assert info.value.retry_after_seconds == 12.0

    httpserver.expect_oneshot_request(PATH).respond_with_data(
        "<html>bad gateway</html>", status=502
    )
    with pytest.raises(TransientProviderError, match="HTTP 502"):
        client.generate(_request())
    # What we sent: the documented REST form, standard base64, the key only in the header.
    sent = json.loads(httpserver.log[0][0].data)
    assert "inlineData" in sent["contents"][0]["parts"][0]
    assert (
        base64.b64decode(sent["contents"][0]["parts"][0]["inlineData"]["data"], validate=True)
        == _photo()
    )
    assert "key" not in httpserver.log[0][0].args


def test_retry_hints_parse() -> None:
    assert parse_duration("28s") == 28.0
    assert parse_duration("0.250s") == 0.25
    assert parse_duration("soon") is None
    assert parse_retry_after("7") == 7.0
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == 90.0
    assert parse_retry_after("garbage") is None


def test_missing_key_is_a_clear_config_error() -> None:
    from catwalk.clients import factory

    with pytest.raises(ConfigError, match="NANO_BANANA_API_KEY"):
        factory.image_generator(Settings(IMAGE_PROVIDER="nano-banana"))
    with pytest.raises(ConfigError, match="PIKA_LABS_API_KEY"):
        factory.video_generator(Settings(VIDEO_PROVIDER="pika"))
    chosen = factory.image_generator(
        Settings(
            IMAGE_PROVIDER="nano-banana",
            NANO_BANANA_API_KEY="k-1",
            NANO_BANANA_MODEL="gemini-3-pro-image-preview",
        )
    )
    assert isinstance(chosen, GeminiImageGenerator) and chosen.model == "gemini-3-pro-image-preview"


def test_official_sdk_gets_a_usable_image_from_the_fake(gemini: FakeGemini, url: str) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=url))
    response = client.models.generate_content(
        model="gemini-2.5-flash-image",
        contents=[
            types.Part.from_bytes(data=_photo(), mime_type="image/jpeg"),
            "A man wearing this shirt, start pose.",
        ],
        config=types.GenerateContentConfig(
            response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="3:4")
        ),
    )
    images = [p.inline_data.data for p in response.parts or [] if p.inline_data and not p.thought]
    assert len(images) == 1
    with Image.open(io.BytesIO(images[0])) as img:
        img.load()
        assert img.width * 4 == img.height * 3
    assert (
        response.usage_metadata is not None
        and response.usage_metadata.candidates_token_count == 1290
    )
    sent = gemini.state()["requests"][0]
    # The SDK's own dialect reached the fake: v1, camelCase outer / snake_case inner, URL-safe.
    assert sent["version"] == "v1" and sent["spellings"] == ["inlineData.mime_type"]

    gemini.add_fault("prompt_block")
    blocked = client.models.generate_content(
        model="gemini-2.5-flash-image",
        contents=[types.Part.from_bytes(data=_photo(), mime_type="image/jpeg"), "x"],
    )
    assert blocked.prompt_feedback is not None and blocked.prompt_feedback.block_reason is not None
