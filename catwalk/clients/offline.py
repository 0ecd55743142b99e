"""Offline providers: real pictures and a real MP4 with no network and no key.

``OfflineImageGenerator`` composes a studio frame with Pillow: a backdrop, a stylised
fashion model in the requested pose and the product photo worn on the torso. The two poses
differ in stance, arms, framing and light, and share the model's identity (skin, hair) through
the job's seed. ``OfflineVideoGenerator`` renders the transition with the bundled ffmpeg.
Both record usage in the units a paid provider bills (1290 output tokens per image,
seconds of video at a resolution), at a price of 0 in ``prices.toml``.

Faults can be injected (``OFFLINE_FAIL_STEPS``) so retries and failures are testable end to
end without a network.
"""

from __future__ import annotations

import io
import random
import time
import uuid
from decimal import Decimal
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

from catwalk.clients.base import OnProgress, OnSubmitted
from catwalk.clients.media import frame_size, render_transition, save_poster
from catwalk.domain import (
    GeneratedImage,
    GeneratedVideo,
    ImageRequest,
    ProviderProgress,
    SubmittedRequest,
    Usage,
    VideoRequest,
)
from catwalk.errors import (
    JobTimedOut,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)

IMAGE_OUTPUT_TOKENS = 1290  # what Gemini bills for one output image up to 1024 px
_SKIN = [(241, 204, 178), (224, 172, 138), (198, 134, 94), (141, 85, 54), (92, 56, 38)]
_HAIR = [(40, 28, 20), (92, 60, 30), (200, 160, 90), (20, 20, 24), (140, 50, 30)]


class FaultPlan:
    """Parses ``OFFLINE_FAIL_STEPS``: "images", "video:transient", "images:transient:2"
    (the first 2 calls fail), "video:transient:30%" (each call fails with probability 0.3),
    "keyframe-mismatch:1" (the first end keyframe is drawn in another garment colour).
    """

    def __init__(self, spec: str, *, rng: random.Random | None = None) -> None:
        self._faults: dict[str, tuple[bool, int | None, float]] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            step, *rest = item.split(":")
            transient = "transient" in rest
            count = next((int(x) for x in rest if x.isdigit()), None)
            rate = next((float(x[:-1]) / 100 for x in rest if x.endswith("%")), 1.0)
            self._faults[step] = (transient, count, rate)
        self._seen: dict[str, int] = {}
        self._rng = rng or random.Random()

    def fires(self, step: str) -> bool:
        """For faults that change the output instead of raising ("keyframe-mismatch:N")."""
        if step not in self._faults:
            return False
        _, count, rate = self._faults[step]
        self._seen[step] = self._seen.get(step, 0) + 1
        if count is not None and self._seen[step] > count:
            return False
        return rate >= 1.0 or self._rng.random() < rate

    def check(self, step: str, provider: str) -> None:
        if step not in self._faults:
            return
        transient, count, rate = self._faults[step]
        self._seen[step] = self._seen.get(step, 0) + 1
        if count is not None and self._seen[step] > count:
            return
        if rate < 1.0 and self._rng.random() >= rate:
            return
        cls: type[ProviderError] = TransientProviderError if transient else PermanentProviderError
        kind = "transient" if transient else "permanent"
        raise cls(f"injected {kind} failure in {step}", provider=provider)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _shaded(colour: tuple[int, int, int], by: int) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, c + by)) for c in colour)
    return r, g, b


def compose_keyframe(
    product: Image.Image,
    *,
    pose: str,
    model_type: str,
    seed: int,
    width: int,
    label: str = "",
    variant: int = 0,
) -> Image.Image:
    """One studio frame of a stylised model wearing ``product`` in the given pose."""
    w, h = frame_size(width)
    rng = random.Random(seed)
    skin = _SKIN[rng.randrange(len(_SKIN))]
    hair = _HAIR[rng.randrange(len(_HAIR))]
    start = pose == "start"

    # Backdrop: a vertical studio gradient, warm for the start pose, cool for the end pose.
    top, bottom = (
        ((246, 236, 224), (214, 196, 178)) if start else ((222, 232, 246), (170, 186, 214))
    )
    # Another take (``variant``: an admin asked for this frame again) is lit differently;
    # the model and the garment, which the keyframe check compares, stay where they are.
    shade = (0, -22, 18, -40, 34)[variant % 5]
    top, bottom = _shaded(top, shade), _shaded(bottom, shade)
    frame = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(frame)
    for y in range(h):
        t = y / (h - 1)
        draw.line(
            [(0, y), (w, y)],
            fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    floor_y = int(h * 0.86)
    draw.rectangle([0, floor_y, w, h], fill=tuple(max(0, c - 28) for c in bottom))

    # The model: the end pose steps to the right, turns slightly and comes closer.
    u = w / 100
    cx = w * (0.42 if start else 0.58)
    scale = 1.0 if start else 1.08
    s = u * scale
    head_r = 7 * s
    head_cy = h * 0.17
    shoulders_y = head_cy + head_r + 5 * s
    torso_w = (30 if model_type == "male" else 26) * s
    torso_h = 34 * s
    hips_y = shoulders_y + torso_h
    shadow = Image.new("L", (w, h), 0)
    ImageDraw.Draw(shadow).ellipse(
        [cx - 22 * s, floor_y - 3 * s, cx + 22 * s, floor_y + 4 * s], fill=90
    )
    frame.paste((60, 50, 45), mask=shadow.filter(ImageFilter.GaussianBlur(3 * s)))

    # Legs and shoes.
    stance = 7 * s if start else 11 * s
    leg_w = int(6 * s)
    for side in (-1, 1):
        foot_x = cx + side * stance + (0 if start else 4 * s)
        draw.line(
            [(cx + side * 6 * s, hips_y), (foot_x, floor_y - 2 * s)], fill=(52, 52, 66), width=leg_w
        )
        draw.ellipse([foot_x - 5 * s, floor_y - 5 * s, foot_x + 5 * s, floor_y], fill=(30, 28, 28))
    if model_type == "female":
        draw.polygon(
            [
                (cx - torso_w / 2, hips_y - 2 * s),
                (cx + torso_w / 2, hips_y - 2 * s),
                (cx + torso_w * 0.75, hips_y + 16 * s),
                (cx - torso_w * 0.75, hips_y + 16 * s),
            ],
            fill=(62, 58, 74),
        )

    # Arms: down by the sides at the start, one hand on the hip and one raised at the end.
    arm_w = int(5 * s)
    left_sh = (cx - torso_w / 2, shoulders_y + 2 * s)
    right_sh = (cx + torso_w / 2, shoulders_y + 2 * s)
    if start:
        hands = [(left_sh[0] - 4 * s, hips_y + 4 * s), (right_sh[0] + 4 * s, hips_y + 4 * s)]
        elbows = [
            (left_sh[0] - 3 * s, shoulders_y + 17 * s),
            (right_sh[0] + 3 * s, shoulders_y + 17 * s),
        ]
    else:
        hands = [
            (cx - torso_w / 2 + 2 * s, hips_y - 4 * s),
            (right_sh[0] + 10 * s, head_cy - 6 * s),
        ]
        elbows = [
            (left_sh[0] - 11 * s, shoulders_y + 14 * s),
            (right_sh[0] + 12 * s, shoulders_y + 4 * s),
        ]
    for shoulder, elbow, hand in zip((left_sh, right_sh), elbows, hands, strict=True):
        draw.line([shoulder, elbow, hand], fill=skin, width=arm_w, joint="curve")
        draw.ellipse(
            [hand[0] - 3 * s, hand[1] - 3 * s, hand[0] + 3 * s, hand[1] + 3 * s], fill=skin
        )

    # The product, cut out of its photo, worn over the torso (sleeves reach past it).
    box = (int(cx - torso_w / 2), int(shoulders_y), int(cx + torso_w / 2), int(hips_y))
    draw.rounded_rectangle(box, radius=int(6 * s), fill=skin)
    garment, garment_mask = _cut_out(product)
    x0, y0, target_w, target_h = garment_placement(
        pose=pose, model_type=model_type, size=(w, h), garment_size=garment.size
    )
    garment = garment.resize((target_w, target_h))
    garment_mask = garment_mask.resize((target_w, target_h))
    frame.paste(garment, (x0, y0), garment_mask)

    # Neck, head, hair (identity: same skin and hair in both poses).
    draw.rectangle([cx - 2.5 * s, head_cy + head_r - s, cx + 2.5 * s, shoulders_y + s], fill=skin)
    tilt = 0 if start else 2 * s
    hair_len = (14 if model_type == "female" else 3) * s
    draw.rounded_rectangle(
        [
            cx - head_r - 1.5 * s + tilt,
            head_cy - head_r - 1.5 * s,
            cx + head_r + 1.5 * s + tilt,
            head_cy + hair_len,
        ],
        radius=int(head_r),
        fill=hair,
    )
    draw.ellipse(
        [cx - head_r + tilt, head_cy - head_r, cx + head_r + tilt, head_cy + head_r], fill=skin
    )

    # Caption: tells a viewer this frame came from the offline provider.
    caption = f"{label}  ·  {pose} pose" if label else f"{pose} pose"
    if variant:
        caption += f"  ·  take {variant + 1}"
    font = _font(max(10, int(3.2 * u)))
    draw.text((3 * u, h - 6 * u), caption[:60], fill=(250, 250, 250), font=font)
    return frame


def garment_placement(
    *, pose: str, model_type: str, size: tuple[int, int], garment_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Where the composer wears a garment cut-out in a frame: (x, y, width, height).

    The one place this geometry lives, so the offline keyframe judge looks at the same
    pixels the composer drew the garment on.
    """
    w, h = size
    start = pose == "start"
    s = (w / 100) * (1.0 if start else 1.08)
    cx = w * (0.42 if start else 0.58)
    shoulders_y = h * 0.17 + 7 * s + 5 * s
    torso_w = (30 if model_type == "male" else 26) * s
    target_w = int(torso_w * 1.5)
    target_h = max(1, round(garment_size[1] * target_w / garment_size[0]))
    target_h = min(target_h, int(h * 0.62))
    return int(cx - target_w / 2), int(shoulders_y - 2 * s), target_w, target_h


def head_placement(*, pose: str, size: tuple[int, int]) -> tuple[float, float, float]:
    """The centre and radius of the composed model's face: (x, y, r)."""
    w, h = size
    start = pose == "start"
    s = (w / 100) * (1.0 if start else 1.08)
    cx = w * (0.42 if start else 0.58) + (0 if start else 2 * s)
    return cx, h * 0.17, 7 * s


# Tints a "mismatched" garment is redrawn in: the one farthest from the garment's own colour.
_MISMATCH_TINTS = [(210, 40, 40), (40, 80, 220), (40, 170, 60), (235, 200, 30)]


def recolour(photo: Image.Image) -> Image.Image:
    """The same garment in another colour (what image models drift into): the
    ``keyframe-mismatch`` fault, and the keyframe check's tests."""
    rgb = photo.convert("RGB")
    small = rgb.resize((32, 32))
    pixels = list(small.getdata())
    mean = tuple(sum(p[i] for p in pixels) / len(pixels) for i in range(3))
    tint = max(
        _MISMATCH_TINTS, key=lambda t: sum((a - b) ** 2 for a, b in zip(t, mean, strict=True))
    )
    grey = ImageOps.grayscale(rgb)
    return ImageOps.colorize(grey, black=tuple(c // 5 for c in tint), white=tint)


def _cut_out(photo: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The product without its studio background: cropped, with a soft mask.

    The background is whatever a flood fill from the photo's corners reaches (a packshot's
    plain backdrop); a light garment on a light backdrop keeps its body thanks to its outline.
    """
    rgb = photo.convert("RGB")
    # The garment is drawn a few hundred pixels wide; a smaller copy keeps the flood fill
    # (pure Python inside Pillow) fast on large packshots.
    rgb.thumbnail((480, 480))
    marker = rgb.copy()
    key = (255, 0, 255)
    for corner in (
        (0, 0),
        (rgb.width - 1, 0),
        (0, rgb.height - 1),
        (rgb.width - 1, rgb.height - 1),
    ):
        if marker.getpixel(corner) != key:
            ImageDraw.floodfill(marker, corner, key, thresh=18)
    diff = ImageChops.difference(marker, Image.new("RGB", rgb.size, key)).convert("L")
    mask = diff.point(lambda v: 255 if v > 0 else 0).filter(ImageFilter.MedianFilter(3))
    bbox = mask.getbbox()
    if bbox is None or (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) < 0.05 * rgb.width * rgb.height:
        # A photo without a plain background: wear the whole photo.
        return rgb, Image.new("L", rgb.size, 255)
    return rgb.crop(bbox), mask.crop(bbox).filter(ImageFilter.GaussianBlur(1))


class OfflineImageGenerator:
    """Keyframes composed locally with Pillow."""

    name = "offline"

    def __init__(
        self, *, width: int, latency_seconds: float = 0.0, faults: FaultPlan | None = None
    ) -> None:
        self._width = width
        self._latency = latency_seconds
        self._faults = faults or FaultPlan("")

    def generate(self, request: ImageRequest) -> GeneratedImage:
        if self._latency:
            time.sleep(self._latency)
        self._faults.check("images", self.name)
        with Image.open(io.BytesIO(request.product_image)) as product:
            # OFFLINE_FAIL_STEPS=keyframe-mismatch[:N]: the end frame drifts to another
            # garment colour (N times), so the keyframe check has something to catch.
            if request.pose == "end" and self._faults.fires("keyframe-mismatch"):
                product = recolour(product)  # type: ignore[assignment]  # an Image, as open() gives
            frame = compose_keyframe(
                product,
                pose=request.pose,
                model_type=request.model_type,
                seed=request.identity_seed,
                width=self._width,
                label=request.product_name,
                variant=request.variant,
            )
        out = io.BytesIO()
        frame.save(out, format="PNG", optimize=False)
        usage = Usage(
            service="nano_banana",
            provider=self.name,
            operation="generate_image",
            model="offline-composer",
            units=Decimal(IMAGE_OUTPUT_TOKENS),
            unit="output_token",
            request_id=f"offline-img-{uuid.uuid4().hex[:12]}",
            # The same counts Gemini reports, so any price row (per token or per image) applies.
            details={"output_tokens": IMAGE_OUTPUT_TOKENS, "images": 1},
        )
        return GeneratedImage(data=out.getvalue(), mime_type="image/png", usage=usage)


class OfflineVideoGenerator:
    """Transitions rendered locally with ffmpeg's xfade."""

    name = "offline"

    def __init__(
        self, *, width: int, latency_seconds: float = 0.0, faults: FaultPlan | None = None
    ) -> None:
        self._width = width
        self._latency = latency_seconds
        self._faults = faults or FaultPlan("")

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
        submitted = resume or SubmittedRequest(request_id=f"offline-vid-{uuid.uuid4().hex[:12]}")
        if resume is None and on_submitted is not None:
            on_submitted(submitted)
        if self._latency:
            # Wait like a provider queue: report progress, give up at the job's deadline.
            began = reported = time.monotonic()
            while (elapsed := time.monotonic() - began) < self._latency:
                if deadline is not None and time.monotonic() >= deadline:
                    raise JobTimedOut("the video was not ready within the job's time limit")
                time.sleep(min(0.25, self._latency - elapsed))
                # Once a second is plenty for a progress bar, and spares the database.
                if on_progress is not None and time.monotonic() - reported >= 1.0:
                    reported = time.monotonic()
                    fraction = min(1.0, (time.monotonic() - began) / self._latency)
                    on_progress(
                        ProviderProgress(
                            request_id=submitted.request_id, status="IN_PROGRESS", fraction=fraction
                        )
                    )
        self._faults.check("video", self.name)
        work_dir.mkdir(parents=True, exist_ok=True)
        start, end = work_dir / "start.png", work_dir / "end.png"
        start.write_bytes(request.start_image)
        end.write_bytes(request.end_image)
        out = work_dir / f"{submitted.request_id}.mp4"
        poster = work_dir / f"{submitted.request_id}.jpg"
        render_transition(
            start,
            end,
            out,
            duration_seconds=request.duration_seconds,
            width=self._width,
            style=request.style,
        )
        save_poster(start, poster, width=self._width)
        if on_progress is not None:
            on_progress(
                ProviderProgress(request_id=submitted.request_id, status="COMPLETED", fraction=1.0)
            )
        usage = Usage(
            service="pika",
            provider=self.name,
            operation="animate",
            model="offline-xfade",
            units=Decimal(request.duration_seconds),
            unit="second",
            resolution=request.resolution,
            request_id=submitted.request_id,
            details={"seconds": request.duration_seconds},
        )
        return GeneratedVideo(
            path=str(out),
            poster_path=str(poster),
            duration_seconds=float(request.duration_seconds),
            usage=usage,
        )
