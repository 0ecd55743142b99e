"""Why a job failed, in an admin's words, and what to do next.

A failure is classed once, when the job ends (``classify``: from the exception and the step
the job was in), and the class is kept on the job row (``failure_kind``). ``explain`` turns
it into one plain-language reason, the next action, and the actions that make sense for it:

- ``retry``: run the job again under its id; what it paid for (keyframes, a video request
  the provider still holds) is reused, so only the missing steps cost anything;
- ``new_keyframes``: run it again with new keyframes: pays for the images (and the video)
  again, which is what helps when the video model refused the frames;
- ``start_over``: a new job for the product, with fresh options and a fresh read of its
  photo: the way out when the photo itself was the trouble.

The raw text (a provider's own message) stays in ``error_message``, shown under "details".
Pure functions, no database: the CLI, the API and the dashboard all call them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from catwalk.domain import JobStatus
from catwalk.errors import (
    ConfigError,
    JobTimedOut,
    KeyframeCheckFailed,
    LimitExceeded,
    PermanentProviderError,
    ProductImageError,
    ProviderError,
    StorageError,
    TransientProviderError,
    is_db_outage,
)


class FailureKind(StrEnum):
    PHOTO_UNUSABLE = "photo_unusable"  # the product photo could not be read or used
    PHOTO_REFUSED = "photo_refused"  # the image model refused to draw the product
    KEYFRAMES_REFUSED = "keyframes_refused"  # the video model refused the keyframes
    KEYFRAMES_REJECTED = "keyframes_rejected"  # the keyframe check failed them
    PROVIDER_DOWN = "provider_down"  # a provider kept failing after the retries
    TIME_LIMIT = "time_limit"
    STORAGE = "storage"
    SETTINGS = "settings"
    SPENDING_LIMIT = "spending_limit"
    DATABASE = "database"
    NOT_STARTED = "not_started"  # the run could not be started
    CRASHED = "crashed"  # the run's process died and the run was given up
    INTERNAL = "internal"


class Action(StrEnum):
    RETRY = "retry"
    NEW_KEYFRAMES = "new_keyframes"
    START_OVER = "start_over"


ACTION_LABELS = {
    Action.RETRY: "Retry",
    Action.NEW_KEYFRAMES: "New keyframes",
    Action.START_OVER: "Start over",
}


@dataclass(frozen=True, slots=True)
class Explanation:
    kind: str  # a FailureKind value, "cancelled", or "unknown" for rows from before kinds
    reason: str
    next_action: str
    actions: tuple[Action, ...]
    details: str  # the raw error text

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "nextAction": self.next_action,
            "actions": [a.value for a in self.actions],
            "details": self.details,
        }


_RETRY_OR_START_OVER = (Action.RETRY, Action.START_OVER)
_NEW_FRAMES = (Action.NEW_KEYFRAMES, Action.START_OVER)

# kind -> (reason, next action, actions). Retrying the same input after a refusal fails
# again in a second, so refusals never offer a plain retry.
_ADVICE: dict[FailureKind, tuple[str, str, tuple[Action, ...]]] = {
    FailureKind.PHOTO_UNUSABLE: (
        "The product photo could not be used (missing, unreachable or not an image).",
        "Fix the product's photo, then start over.",
        (Action.START_OVER,),
    ),
    FailureKind.PHOTO_REFUSED: (
        "The image model refused to draw a model wearing this product.",
        "Choose another photo of the product or change its description, then start over.",
        (Action.START_OVER,),
    ),
    FailureKind.KEYFRAMES_REFUSED: (
        "The video model refused these keyframes (its content policy).",
        "Make new keyframes; if it is refused again, start over with another photo or style.",
        _NEW_FRAMES,
    ),
    FailureKind.KEYFRAMES_REJECTED: (
        "The keyframes failed the quality check, so no video was bought.",
        "Make new keyframes, or start over with another photo.",
        _NEW_FRAMES,
    ),
    FailureKind.PROVIDER_DOWN: (
        "A provider kept failing after every retry (down, overloaded or rate limited).",
        "Retry in a few minutes: what was already paid for is reused.",
        _RETRY_OR_START_OVER,
    ),
    FailureKind.TIME_LIMIT: (
        "The job ran past its time limit and was stopped.",
        "Retry: what was already paid for is reused. If it keeps happening, raise the limit.",
        _RETRY_OR_START_OVER,
    ),
    FailureKind.STORAGE: (
        "The video or its poster could not be stored.",
        "Check the storage settings and free space, then retry.",
        (Action.RETRY,),
    ),
    FailureKind.SETTINGS: (
        "A setting is missing or wrong.",
        "Fix the setting named in the details, then retry.",
        (Action.RETRY,),
    ),
    FailureKind.SPENDING_LIMIT: (
        "A spending limit stopped the job.",
        "Retry after the limit resets, or raise it.",
        (Action.RETRY,),
    ),
    FailureKind.DATABASE: (
        "The database could not be reached for too long.",
        "Retry once the database is back.",
        _RETRY_OR_START_OVER,
    ),
    FailureKind.NOT_STARTED: (
        "The job could not be started (no worker or Prefect server answered).",
        "Check that `catwalk worker` runs, then retry.",
        _RETRY_OR_START_OVER,
    ),
    FailureKind.CRASHED: (
        "The process running the job stopped and the job could not be resumed.",
        "Retry: what was already paid for is reused.",
        _RETRY_OR_START_OVER,
    ),
    FailureKind.INTERNAL: (
        "Something went wrong inside catwalk.",
        "Retry; if it fails again, send the details to your engineers.",
        _RETRY_OR_START_OVER,
    ),
}


def classify(error: BaseException, *, stage: JobStatus | None = None) -> FailureKind:
    """The class of a job's final error; ``stage`` is the status the job was in."""
    if isinstance(error, ProductImageError):
        return FailureKind.PHOTO_UNUSABLE
    if isinstance(error, KeyframeCheckFailed):
        return FailureKind.KEYFRAMES_REJECTED
    if isinstance(error, PermanentProviderError):
        if stage is JobStatus.GENERATING_VIDEO:
            return FailureKind.KEYFRAMES_REFUSED
        return FailureKind.PHOTO_REFUSED
    if isinstance(error, (TransientProviderError, ProviderError)):
        return FailureKind.PROVIDER_DOWN
    if isinstance(error, (JobTimedOut, TimeoutError, asyncio.CancelledError)):
        return FailureKind.TIME_LIMIT
    if isinstance(error, StorageError) or (isinstance(error, OSError) and _disk_full(error)):
        return FailureKind.STORAGE
    if isinstance(error, ConfigError):
        return FailureKind.SETTINGS
    if isinstance(error, LimitExceeded):
        return FailureKind.SPENDING_LIMIT
    if is_db_outage(error):
        return FailureKind.DATABASE
    return FailureKind.INTERNAL


def _disk_full(error: OSError) -> bool:
    import errno

    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def explain(status: JobStatus, kind: str | None, error_message: str | None) -> Explanation | None:
    """What to tell an admin about an ended job; None unless it failed or was cancelled."""
    details = error_message or ""
    if status is JobStatus.CANCELLED:
        return Explanation(
            "cancelled",
            "The job was cancelled (by an admin, or its review was rejected or expired).",
            "Retry to finish it with what it already paid for, or start over.",
            _RETRY_OR_START_OVER,
            details,
        )
    if status is not JobStatus.FAILED:
        return None
    try:
        known = FailureKind(kind) if kind else None
    except ValueError:
        known = None
    if known is None:
        return Explanation(
            "unknown",
            "The job failed.",
            "Read the details, then retry or start over.",
            (Action.RETRY, Action.NEW_KEYFRAMES, Action.START_OVER),
            details,
        )
    reason, next_action, actions = _ADVICE[known]
    return Explanation(known.value, reason, next_action, actions, details)
