"""Prices from configuration (``prices.toml``, or ``CATWALK_PRICES_FILE``) and the cost of a
provider call computed from them.

A price row is matched on provider, model and resolution, and the newest row whose
``price_date`` is not after the call's date wins, so a price change never rewrites history.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path

from catwalk.config import Settings, get_settings
from catwalk.domain import Usage
from catwalk.errors import ConfigError

DEFAULT_PRICES_FILE = Path(str(resources.files("catwalk") / "prices.toml"))


@dataclass(frozen=True, slots=True)
class Price:
    provider: str
    model: str
    unit: str
    unit_price: Decimal
    price_date: dt.date
    resolution: str | None = None
    input_unit_price: Decimal = Decimal(0)
    minimum_units: Decimal = Decimal(0)
    source: str = ""

    def matches(self, usage: Usage) -> bool:
        return (
            self.provider == usage.provider
            and self.model in ("*", usage.model)
            and (self.resolution is None or self.resolution == usage.resolution)
        )


@dataclass(frozen=True, slots=True)
class Charge:
    unit_price: Decimal
    amount: Decimal
    price_date: dt.date


@lru_cache(maxsize=8)
def load_prices(path: Path) -> tuple[Price, ...]:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the price list {path}: {exc}") from exc
    prices = []
    for row in raw.get("price", []):
        try:
            prices.append(
                Price(
                    provider=row["provider"],
                    model=row["model"],
                    unit=row["unit"],
                    unit_price=Decimal(row["unit_price"]),
                    price_date=dt.date.fromisoformat(row["price_date"]),
                    resolution=row.get("resolution"),
                    input_unit_price=Decimal(row.get("input_unit_price", "0")),
                    minimum_units=Decimal(row.get("minimum_units", "0")),
                    source=row.get("source", ""),
                )
            )
        except (KeyError, ArithmeticError, ValueError) as exc:
            raise ConfigError(f"bad price row in {path}: {row!r} ({exc})") from exc
    return tuple(prices)


def prices(settings: Settings | None = None) -> tuple[Price, ...]:
    settings = settings or get_settings()
    return load_prices(settings.prices_file or DEFAULT_PRICES_FILE)


def find_price(usage: Usage, *, on: dt.date, settings: Settings | None = None) -> Price:
    candidates = [p for p in prices(settings) if p.matches(usage) and p.price_date <= on]
    # A resolution-specific row beats a generic one; then the newest row wins.
    candidates.sort(key=lambda p: (p.resolution is not None, p.model != "*", p.price_date))
    if not candidates:
        raise ConfigError(
            f"no price configured for {usage.provider} {usage.model}"
            f"{' at ' + usage.resolution if usage.resolution else ''}"
        )
    return candidates[-1]


# Where a call's usage keeps a count in another unit than the one it is recorded in: a
# per-image price (Gemini 3 Pro Image) applied to a call recorded in output tokens.
_UNIT_DETAILS = {"image": "images", "output_token": "output_tokens", "second": "seconds"}


def _billed_units(usage: Usage, price: Price) -> Decimal:
    if price.unit in ("*", usage.unit):
        return usage.units
    key = _UNIT_DETAILS.get(price.unit, price.unit)
    if key not in usage.details:
        raise ConfigError(
            f"price for {usage.provider} {usage.model} is per {price.unit}, "
            f"but the call was recorded in {usage.unit}s"
        )
    return Decimal(str(usage.details[key]))


def charge_for(
    usage: Usage, *, on: dt.date | None = None, settings: Settings | None = None
) -> Charge:
    """The amount one call costs, from its usage and the price list."""
    on = on or dt.datetime.now(dt.UTC).date()
    if not usage.billed:
        # Nothing billed (a refused request, the local offline judge): no price row needed.
        try:
            price = find_price(usage, on=on, settings=settings)
        except ConfigError:
            return Charge(unit_price=Decimal(0), amount=Decimal(0), price_date=on)
        return Charge(unit_price=price.unit_price, amount=Decimal(0), price_date=price.price_date)
    price = find_price(usage, on=on, settings=settings)
    units = max(_billed_units(usage, price), price.minimum_units)
    amount = units * price.unit_price
    input_tokens = usage.details.get("input_tokens")
    if input_tokens:
        amount += Decimal(str(input_tokens)) * price.input_unit_price
    return Charge(
        unit_price=price.unit_price,
        amount=amount.quantize(Decimal("0.000001")),
        price_date=price.price_date,
    )


# Output tokens Gemini bills for one image up to 1024 px (ai.google.dev pricing); used
# when a model is priced per output token rather than per image.
IMAGE_OUTPUT_TOKENS = 1290
KEYFRAMES_PER_JOB = 2


def _planned_calls(settings: Settings) -> list[Usage]:
    """The paid calls one job makes with the configured providers, if each succeeds once."""
    if settings.image_provider == "offline":
        image = Usage(
            "nano_banana", "offline", "generate_image", "offline-composer", Decimal(0), "image"
        )
    else:
        image = Usage(
            "nano_banana",
            "gemini",
            "generate_image",
            settings.nano_banana_model,
            Decimal(0),
            "image",
            resolution=settings.image_size,
        )
    if settings.video_provider == "offline":
        video_provider, video_model = "offline", "offline-xfade"
    else:
        video_provider, video_model = "fal", settings.pika_endpoint
    video = Usage(
        "pika",
        video_provider,
        "animate",
        video_model,
        Decimal(settings.video_duration_seconds),
        "second",
        resolution=settings.video_resolution,
    )
    return [image] * KEYFRAMES_PER_JOB + [video]


def estimate_calls_cost(
    settings: Settings | None = None, *, images: int, video: bool, on: dt.date | None = None
) -> Decimal:
    """What ``images`` keyframes and (optionally) the video cost with the configured providers."""
    settings = settings or get_settings()
    on = on or dt.datetime.now(dt.UTC).date()
    image, clip = _planned_calls(settings)[0], _planned_calls(settings)[-1]
    total = Decimal(0)
    for usage in [image] * images + ([clip] if video else []):
        if usage.unit == "image":
            price = find_price(usage, on=on, settings=settings)
            units = Decimal(IMAGE_OUTPUT_TOKENS) if price.unit == "output_token" else Decimal(1)
            usage = dataclasses.replace(usage, units=units, unit=price.unit)
        total += charge_for(usage, on=on, settings=settings).amount
    return total


def estimate_judge_cost(
    settings: Settings | None = None, *, calls: int = 1, on: dt.date | None = None
) -> Decimal:
    """The most ``calls`` keyframe-judge calls can cost (the offline judge is free)."""
    settings = settings or get_settings()
    if calls <= 0 or settings.effective_keyframe_judge == "offline":
        return Decimal(0)
    from catwalk.clients.judge_gemini import MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS

    usage = Usage(
        "keyframe_check",
        "gemini",
        "judge_keyframes",
        settings.keyframe_judge_model,
        Decimal(MAX_OUTPUT_TOKENS),
        "output_token",
        details={"input_tokens": MAX_INPUT_TOKENS, "output_tokens": MAX_OUTPUT_TOKENS},
    )
    return charge_for(usage, on=on, settings=settings).amount * calls


def keyframe_check_worst_case(settings: Settings) -> tuple[int, int]:
    """(extra keyframes, judge calls) the keyframe check may buy for one job at most."""
    mode = settings.effective_keyframe_check
    if mode == "off":
        return 0, 0
    if mode == "warn":
        return 0, 1
    retries = settings.keyframe_check_retries
    return KEYFRAMES_PER_JOB * retries, 1 + retries


def estimate_job_cost(settings: Settings | None = None, *, on: dt.date | None = None) -> Decimal:
    """What one video job may cost at most: reserved against the daily budget up front.

    The keyframe check's worst case is included (every regeneration of both frames and
    every judge call), so a job whose keyframes keep failing never overshoots the budget.
    """
    settings = settings or get_settings()
    extra_images, judge_calls = keyframe_check_worst_case(settings)
    return estimate_calls_cost(
        settings, images=KEYFRAMES_PER_JOB + extra_images, video=True, on=on
    ) + estimate_judge_cost(settings, calls=judge_calls, on=on)


def _fields(usage: Usage) -> dict[str, object]:
    return {name: getattr(usage, name) for name in Usage.__dataclass_fields__}
