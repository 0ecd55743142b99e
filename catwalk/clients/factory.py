"""The one place that turns settings into provider and storage implementations.

Tests swap an implementation with ``override(...)`` instead of patching. Implementations
are imported when first chosen: ``catwalk products`` or ``status`` need only the blob store,
not Pillow (the offline providers) or httpx (the alert notifier).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

from catwalk.clients.base import BlobStore, ImageGenerator, KeyframeJudge, Notifier, VideoGenerator
from catwalk.clients.storage import LocalBlobStore, S3BlobStore
from catwalk.config import Settings, get_settings
from catwalk.errors import ConfigError

if TYPE_CHECKING:
    from catwalk.clients.offline import FaultPlan

_overrides: dict[str, object] = {}


@lru_cache(maxsize=16)
def _fault_plan(spec: str) -> FaultPlan:
    from catwalk.clients.offline import FaultPlan

    # Shared per process, so "fail twice then succeed" counts across retries.
    return FaultPlan(spec)


def image_generator(settings: Settings | None = None) -> ImageGenerator:
    if "image" in _overrides:
        return _overrides["image"]  # type: ignore[return-value]
    settings = settings or get_settings()
    if settings.image_provider == "offline":
        from catwalk.clients.offline import OfflineImageGenerator

        return OfflineImageGenerator(
            width=settings.offline_frame_width,
            latency_seconds=settings.offline_image_latency_seconds,
            faults=_fault_plan(settings.offline_fail_steps),
        )
    if settings.image_provider == "nano-banana":
        from catwalk.clients.gemini import GeminiImageGenerator

        return GeminiImageGenerator.from_settings(settings)
    raise ConfigError(f"image provider {settings.image_provider!r} is not available")


def video_generator(settings: Settings | None = None) -> VideoGenerator:
    if "video" in _overrides:
        return _overrides["video"]  # type: ignore[return-value]
    settings = settings or get_settings()
    if settings.video_provider == "offline":
        from catwalk.clients.offline import OfflineVideoGenerator

        return OfflineVideoGenerator(
            width=settings.offline_frame_width,
            latency_seconds=settings.offline_video_latency_seconds,
            faults=_fault_plan(settings.offline_fail_steps),
        )
    if settings.video_provider == "pika":
        from catwalk.clients.fal_pika import FalPikaVideoGenerator

        return FalPikaVideoGenerator.from_settings(settings)
    raise ConfigError(f"video provider {settings.video_provider!r} is not available")


def keyframe_judge(settings: Settings | None = None) -> KeyframeJudge:
    """The keyframe check's judge (KEYFRAME_JUDGE; by default gemini with Nano Banana)."""
    if "judge" in _overrides:
        return _overrides["judge"]  # type: ignore[return-value]
    settings = settings or get_settings()
    if settings.effective_keyframe_judge == "offline":
        from catwalk.clients.judge_offline import OfflineKeyframeJudge

        return OfflineKeyframeJudge()
    if settings.effective_keyframe_judge == "gemini":
        from catwalk.clients.judge_gemini import GeminiKeyframeJudge

        return GeminiKeyframeJudge.from_settings(settings)
    raise ConfigError(f"keyframe judge {settings.effective_keyframe_judge!r} is not available")


def blob_store(settings: Settings | None = None) -> BlobStore:
    if "storage" in _overrides:
        return _overrides["storage"]  # type: ignore[return-value]
    settings = settings or get_settings()
    if settings.storage_backend == "local":
        return LocalBlobStore(settings.media_dir)
    if settings.storage_backend == "s3":
        return S3BlobStore.from_settings(settings)
    raise ConfigError(f"storage backend {settings.storage_backend!r} is not available")


def notifier(settings: Settings | None = None) -> Notifier | None:
    """Where alerts go; None when no ``ALERT_WEBHOOK_URL`` is set (alerts stay in the dashboard)."""
    if "notifier" in _overrides:
        return _overrides["notifier"]  # type: ignore[return-value]
    settings = settings or get_settings()
    if settings.alert_webhook_url is None:
        return None
    from catwalk.clients.alerts import WebhookNotifier

    return WebhookNotifier(settings.alert_webhook_url)


@contextmanager
def override(**implementations: object) -> Iterator[None]:
    """Use the given implementations (keys: image, video, judge, storage, notifier) inside
    the block."""
    unknown = set(implementations) - {"image", "video", "judge", "storage", "notifier"}
    if unknown:
        raise ValueError(f"unknown capability: {', '.join(sorted(unknown))}")
    saved = dict(_overrides)
    _overrides.update(implementations)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(saved)
