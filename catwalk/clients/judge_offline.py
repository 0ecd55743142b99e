"""The offline keyframe judge: a deterministic image comparison with Pillow and NumPy.

For each keyframe it compares the garment region (where the offline composer wears the
product, ``offline.garment_placement``) with the product's own cut-out, resized the same
way: the colour distribution as a Lab histogram (Hellinger distance), the mean colour
difference (CIE76 delta E) and a structural measure (SSIM of the lightness over 8x8 blocks
inside the garment's mask). The two keyframes are then compared with each other: the
garments' colours, and the face's skin colour (the person's identity in the composer).

Thresholds are set so the composer's own frames pass with a wide margin (measured: garment
delta E < 3, SSIM > 0.9) and a recoloured or swapped garment fails (delta E > 25 or SSIM
< 0.5); ``tests/test_keyframe_check.py`` checks both sides. The structural measure sees a
changed print or pattern; on a plain garment it is near 1 whatever the shape, so a changed cut
of a one-colour garment is not caught. It is made for the frames the offline composer (and
the fake Gemini server) draw; real photographs need the ``gemini`` judge.

No Prefect, tasks, flows or db here (clients layer).
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from catwalk.clients.offline import _cut_out, garment_placement, head_placement
from catwalk.domain import POSES, JudgeRequest, KeyframeVerdict, Pose, Usage
from catwalk.errors import PermanentProviderError

# A frame's garment passes when all three hold.
MAX_DELTA_E = 12.0
MIN_HIST_SIMILARITY = 0.55
MIN_SSIM = 0.5
# Start against end: the garment's colour and the face's skin must agree this well.
MAX_PAIR_DELTA_E = 12.0
MAX_SKIN_DELTA_E = 10.0
_WORK_WIDTH = 96
_BINS = (4, 6, 6)  # L, a, b
_RANGES = ((0.0, 100.0), (-90.0, 90.0), (-90.0, 90.0))


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of an ``(..., 3)`` uint8 sRGB array."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def lab_histogram(lab: np.ndarray) -> np.ndarray:
    """A normalised 3-D Lab histogram of an ``(n, 3)`` array of Lab pixels."""
    hist, _ = np.histogramdd(lab, bins=_BINS, range=_RANGES)
    total = hist.sum()
    return hist / total if total else hist


def hist_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 - Hellinger distance: 1 for the same distribution, 0 for disjoint ones."""
    bc = float(np.sum(np.sqrt(a * b)))
    return 1.0 - float(np.sqrt(max(0.0, 1.0 - bc)))


def block_ssim(x: np.ndarray, y: np.ndarray, mask: np.ndarray, block: int = 8) -> float:
    """Mean SSIM of lightness over the blocks mostly inside ``mask`` (L in 0-100)."""
    c1, c2 = (0.01 * 100) ** 2, (0.03 * 100) ** 2
    scores = []
    for i in range(0, x.shape[0] - block + 1, block):
        for j in range(0, x.shape[1] - block + 1, block):
            if mask[i : i + block, j : j + block].mean() < 0.75:
                continue
            a, b = x[i : i + block, j : j + block], y[i : i + block, j : j + block]
            ma, mb = a.mean(), b.mean()
            va, vb = a.var(), b.var()
            cov = ((a - ma) * (b - mb)).mean()
            scores.append(
                ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(scores)) if scores else 0.0


@dataclass(frozen=True, slots=True)
class GarmentScore:
    delta_e: float
    hist: float
    ssim: float
    lab_mean: np.ndarray

    @property
    def ok(self) -> bool:
        return (
            self.delta_e <= MAX_DELTA_E
            and self.hist >= MIN_HIST_SIMILARITY
            and self.ssim >= MIN_SSIM
        )

    @property
    def score(self) -> float:
        colour = max(0.0, 1.0 - self.delta_e / 50.0)
        return max(0.0, min(1.0, (colour + self.hist + max(0.0, self.ssim)) / 3))


def _open(data: bytes, what: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PermanentProviderError(
            f"the {what} is not a readable image", provider="offline"
        ) from exc


def score_garment(
    frame: Image.Image, garment: Image.Image, mask: Image.Image, *, pose: str, model_type: str
) -> GarmentScore:
    """Compare the frame's garment region with the product cut-out worn the same way."""
    x0, y0, tw, th = garment_placement(
        pose=pose, model_type=model_type, size=frame.size, garment_size=garment.size
    )
    region = frame.crop((x0, y0, x0 + tw, y0 + th))
    product = garment.resize((tw, th))
    # Compared at one working size, slightly blurred: a pixel of misplacement from rounding
    # (small frames, a provider's crop to the aspect ratio) must not read as a new pattern.
    size = (_WORK_WIDTH, max(8, round(th * _WORK_WIDTH / tw)))
    region = region.resize(size).filter(ImageFilter.GaussianBlur(1))
    product = product.resize(size).filter(ImageFilter.GaussianBlur(1))
    th = size[1]
    m = np.asarray(mask.resize(size), dtype=np.float64) / 255.0
    # The neck and (long) hair are drawn over the garment's top: leave the top tenth out.
    m[: max(1, th // 10), :] = 0.0
    inside = m > 0.5
    lab_frame = srgb_to_lab(np.asarray(region))
    lab_product = srgb_to_lab(np.asarray(product))
    if inside.sum() < 16:
        return GarmentScore(100.0, 0.0, 0.0, np.zeros(3))
    a, b = lab_frame[inside], lab_product[inside]
    mean_a = a.mean(axis=0)
    delta_e = float(np.linalg.norm(mean_a - b.mean(axis=0)))
    hist = hist_similarity(lab_histogram(a), lab_histogram(b))
    ssim = block_ssim(lab_frame[..., 0], lab_product[..., 0], m)
    return GarmentScore(delta_e, hist, ssim, mean_a)


def skin_colour(frame: Image.Image, *, pose: str) -> np.ndarray:
    """Median Lab colour of the inner face (the composer's skin tone for the person)."""
    cx, cy, r = head_placement(pose=pose, size=frame.size)
    inner = r * 0.5
    crop = frame.crop((int(cx - inner), int(cy - inner), int(cx + inner) + 1, int(cy + inner) + 1))
    lab = srgb_to_lab(np.asarray(crop)).reshape(-1, 3)
    return np.median(lab, axis=0)


class OfflineKeyframeJudge:
    """The embedded default judge: no network, no key, the same answer every time."""

    name = "offline"
    model = "offline-judge"

    def judge(self, request: JudgeRequest) -> KeyframeVerdict:
        photo = _open(request.product_image, "product photo")
        frames = {
            "start": _open(request.start_image, "start keyframe"),
            "end": _open(request.end_image, "end keyframe"),
        }
        garment, mask = _cut_out(photo)
        scores = {
            pose: score_garment(
                frames[pose], garment, mask, pose=pose, model_type=request.model_type
            )
            for pose in POSES
        }
        failed: list[Pose] = []
        issues: list[str] = []
        for pose in POSES:
            s = scores[pose]
            if s.ok:
                continue
            failed.append(pose)
            if s.delta_e > MAX_DELTA_E or s.hist < MIN_HIST_SIMILARITY:
                issues.append(
                    f"{pose} frame: garment colour differs from the product photo "
                    f"(delta E {s.delta_e:.0f}, histogram match {s.hist:.2f})"
                )
            if s.ssim < MIN_SSIM:
                issues.append(
                    f"{pose} frame: garment pattern or shape differs from the product photo "
                    f"(structure {s.ssim:.2f})"
                )
        pair_delta = float(np.linalg.norm(scores["start"].lab_mean - scores["end"].lab_mean))
        skin_delta = float(
            np.linalg.norm(
                skin_colour(frames["start"], pose="start") - skin_colour(frames["end"], pose="end")
            )
        )
        same_person = max(0.0, 1.0 - max(skin_delta / 50.0, pair_delta / 100.0))
        if skin_delta > MAX_SKIN_DELTA_E:
            issues.append(f"the two frames show different people (skin delta E {skin_delta:.0f})")
        if pair_delta > MAX_PAIR_DELTA_E:
            issues.append(
                f"the two frames show different garments (colour delta E {pair_delta:.0f})"
            )
        if (skin_delta > MAX_SKIN_DELTA_E or pair_delta > MAX_PAIR_DELTA_E) and not failed:
            # The start frame anchors the person and the garment: the end frame is redone.
            failed.append("end")
        usage = Usage(
            service="keyframe_check",
            provider=self.name,
            operation="judge_keyframes",
            model=self.model,
            units=Decimal(1),
            unit="call",
            request_id=f"offline-judge-{uuid.uuid4().hex[:12]}",
            # Runs locally: nothing is billed, and no price row is needed for it.
            billed=False,
        )
        return KeyframeVerdict(
            passed=not failed,
            garment_match=min(scores[p].score for p in POSES),
            same_person=same_person,
            failed_frames=tuple(failed),
            issues=tuple(issues),
            usage=usage,
            judge=self.name,
        )
