"""Plain data passed between catwalk's layers: statuses, options and step results.

Frozen, slotted dataclasses; no I/O and no imports from the rest of catwalk.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, get_args

ModelType = Literal["female", "male"]
VideoStyle = Literal["smooth", "dynamic"]
Pose = Literal["start", "end"]
POSES: tuple[Pose, Pose] = ("start", "end")
# Where a job stops for an admin's decision (REVIEW, per job ``review``): after the
# keyframes (before the video is bought), before the product points at the new video, both.
ReviewMode = Literal["none", "keyframes", "publish", "both"]
ReviewPoint = Literal["keyframes", "publish"]
ReviewDecisionKind = Literal["approve", "reject", "regenerate-start", "regenerate-end"]
REVIEW_MODES: tuple[str, ...] = get_args(ReviewMode)
REVIEW_DECISIONS: tuple[str, ...] = get_args(ReviewDecisionKind)
_REVIEW_POINTS: dict[str, tuple[ReviewPoint, ...]] = {
    "none": (),
    "keyframes": ("keyframes",),
    "publish": ("publish",),
    "both": ("keyframes", "publish"),
}


def review_points(mode: str) -> tuple[ReviewPoint, ...]:
    """The points a job with review ``mode`` stops at, in the order it reaches them."""
    return _REVIEW_POINTS[mode]


class JobStatus(enum.StrEnum):
    """A video job's life (REQ-006), plus CANCELLED for an admin's cancel."""

    PENDING = "PENDING"
    GENERATING_IMAGES = "GENERATING_IMAGES"
    GENERATING_VIDEO = "GENERATING_VIDEO"
    UPLOADING = "UPLOADING"
    # Stopped at a review point until an admin approves or rejects; holds no process or slot.
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES

    @property
    def is_final(self) -> bool:
        return not self.is_active


ACTIVE_STATUSES: frozenset[JobStatus] = frozenset(
    {
        JobStatus.PENDING,
        JobStatus.GENERATING_IMAGES,
        JobStatus.GENERATING_VIDEO,
        JobStatus.UPLOADING,
        # Still the product's one job in flight (a second "generate" must not start), its
        # reservation still held.
        JobStatus.AWAITING_APPROVAL,
    }
)

# Progress reached when each step starts; the video step moves between its start and
# UPLOADING's as the provider reports progress.
STEP_PROGRESS: dict[JobStatus, int] = {
    JobStatus.PENDING: 0,
    JobStatus.GENERATING_IMAGES: 5,
    JobStatus.GENERATING_VIDEO: 45,
    JobStatus.UPLOADING: 90,
    JobStatus.COMPLETED: 100,
}


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What an admin can choose per job (the original contract's ``options``)."""

    model_type: ModelType = "female"
    video_style: VideoStyle = "smooth"
    # None: the REVIEW setting of the worker that starts the job.
    review: ReviewMode | None = None

    @classmethod
    def from_mapping(cls, raw: dict[str, object] | None) -> JobOptions:
        """Accept both the contract's camelCase and snake_case keys; reject bad values."""
        raw = dict(raw or {})
        model_type = raw.pop("modelType", raw.pop("model_type", "female"))
        video_style = raw.pop("videoStyle", raw.pop("video_style", "smooth"))
        review = raw.pop("review", None)
        if raw:
            raise ValueError(f"unknown option(s): {', '.join(sorted(raw))}")
        if model_type not in ("female", "male"):
            raise ValueError(f"modelType must be 'female' or 'male', not {model_type!r}")
        if video_style not in ("smooth", "dynamic"):
            raise ValueError(f"videoStyle must be 'smooth' or 'dynamic', not {video_style!r}")
        if review is not None and review not in REVIEW_MODES:
            raise ValueError(f"review must be one of {', '.join(REVIEW_MODES)}, not {review!r}")
        return cls(model_type=model_type, video_style=video_style, review=review)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, str]:
        out: dict[str, str] = {"modelType": self.model_type, "videoStyle": self.video_style}
        if self.review is not None:
            out["review"] = self.review
        return out


@dataclass(frozen=True, slots=True)
class Usage:
    """What one provider call consumed, in the provider's billing units."""

    service: str  # "nano_banana" | "pika" (the contract's cost buckets)
    provider: str  # implementation name: "gemini", "fal", "offline"
    operation: str  # "generate_image" | "animate"
    model: str
    units: Decimal
    unit: str  # "image", "token", "second"
    resolution: str | None = None
    request_id: str | None = None
    billed: bool = True
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Ask for one keyframe of a model wearing the product."""

    product_image: bytes
    product_image_mime: str
    model_type: ModelType
    pose: Pose
    # Same seed for both poses of a job, so the two frames show the same model.
    identity_seed: int
    product_name: str = ""
    # What the keyframe check found wrong with an earlier attempt at this frame, fed back
    # into the prompt when the frame is made again.
    feedback: tuple[str, ...] = ()
    # Bumped when an admin asks for the frame again: another take, not the same picture.
    variant: int = 0


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """Ask whether two keyframes show the product, and the same person wearing it."""

    product_image: bytes
    product_image_mime: str
    start_image: bytes
    end_image: bytes
    image_mime: str = "image/png"
    model_type: ModelType = "female"
    product_name: str = ""


@dataclass(frozen=True, slots=True)
class KeyframeVerdict:
    """A judge's answer for one pair of keyframes (scores 0-1, higher is better)."""

    passed: bool
    garment_match: float
    same_person: float
    failed_frames: tuple[Pose, ...]
    issues: tuple[str, ...]
    usage: Usage
    judge: str

    def to_dict(self) -> dict[str, object]:
        return {
            "verdict": "pass" if self.passed else "fail",
            "garmentMatch": round(self.garment_match, 3),
            "samePerson": round(self.same_person, 3),
            "failedFrames": list(self.failed_frames),
            "issues": list(self.issues),
            "judge": self.judge,
        }


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes
    mime_type: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class VideoRequest:
    """Ask for a transition video from the start keyframe to the end keyframe."""

    start_image: bytes
    end_image: bytes
    mime_type: str
    style: VideoStyle
    duration_seconds: int
    resolution: str
    # URLs a remote provider can fetch, when storage can hand them out (else data URIs).
    start_image_url: str | None = None
    end_image_url: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderProgress:
    """What a long provider call reports while it waits (shown on the job)."""

    request_id: str | None = None
    status: str = ""
    queue_position: int | None = None
    fraction: float | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class GeneratedVideo:
    """A finished video, already downloaded to a local file (provider URLs expire)."""

    path: str
    poster_path: str
    duration_seconds: float
    usage: Usage
    provider_url: str | None = None


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    content_type: str
    checksum: str | None = None


@dataclass(frozen=True, slots=True)
class VideoFacts:
    """What the pre-publish check learned about a video file."""

    duration_seconds: float
    width: int
    height: int
    codec: str
    pixel_format: str
    size_bytes: int
    frames: int


@dataclass(frozen=True, slots=True)
class SubmittedRequest:
    """A queued provider request, as the provider described it when it accepted it.

    Saved on the job before waiting, so a restarted worker re-attaches with these exact
    URLs (never rebuilt ones) instead of submitting, and paying, again.
    """

    request_id: str
    status_url: str = ""
    response_url: str = ""
    cancel_url: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "request_id": self.request_id,
            "status_url": self.status_url,
            "response_url": self.response_url,
            "cancel_url": self.cancel_url,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> SubmittedRequest:
        return cls(
            request_id=str(raw["request_id"]),
            status_url=str(raw.get("status_url", "")),
            response_url=str(raw.get("response_url", "")),
            cancel_url=str(raw.get("cancel_url", "")),
        )
