"""Failure classes: each class of error, in the step it happened, gets the plain reason and
the actions that can help; a refusal never offers the plain retry that fails again."""

from __future__ import annotations

import asyncio
import errno

import pytest

from catwalk.domain import JobStatus
from catwalk.errors import (
    ConfigError,
    JobTimedOut,
    KeyframeCheckFailed,
    LimitExceeded,
    PermanentProviderError,
    ProductImageError,
    StorageError,
    TransientProviderError,
)
from catwalk.failures import Action, FailureKind, classify, explain

V, I = JobStatus.GENERATING_VIDEO, JobStatus.GENERATING_IMAGES


@pytest.mark.parametrize(
    ("error", "stage", "kind"),
    [
        (ProductImageError("no image"), JobStatus.PENDING, FailureKind.PHOTO_UNUSABLE),
        (PermanentProviderError("IMAGE_SAFETY", provider="gemini"), I, FailureKind.PHOTO_REFUSED),
        (PermanentProviderError("policy", provider="fal"), V, FailureKind.KEYFRAMES_REFUSED),
        (KeyframeCheckFailed("wrong garment"), I, FailureKind.KEYFRAMES_REJECTED),
        (TransientProviderError("503", provider="fal"), V, FailureKind.PROVIDER_DOWN),
        (JobTimedOut("past 900 s"), V, FailureKind.TIME_LIMIT),
        (asyncio.CancelledError(), V, FailureKind.TIME_LIMIT),
        (StorageError("bucket missing"), JobStatus.UPLOADING, FailureKind.STORAGE),
        (OSError(errno.ENOSPC, "No space left"), JobStatus.UPLOADING, FailureKind.STORAGE),
        (ConfigError("PIKA_LABS_API_KEY is not set"), V, FailureKind.SETTINGS),
        (LimitExceeded("budget", retry_after_seconds=60), I, FailureKind.SPENDING_LIMIT),
        (KeyError("x"), V, FailureKind.INTERNAL),
    ],
)
def test_each_error_gets_its_class(
    error: BaseException, stage: JobStatus, kind: FailureKind
) -> None:
    assert classify(error, stage=stage) is kind


@pytest.mark.parametrize("kind", list(FailureKind))
def test_every_class_says_why_and_what_next_with_at_least_one_action(kind: FailureKind) -> None:
    said = explain(JobStatus.FAILED, kind.value, "video: raw provider text")
    assert said is not None and said.kind == kind.value
    assert said.reason.endswith(".") and said.next_action.endswith(".")
    assert said.actions and said.details == "video: raw provider text"


@pytest.mark.parametrize(
    "kind", [FailureKind.PHOTO_REFUSED, FailureKind.KEYFRAMES_REFUSED, FailureKind.PHOTO_UNUSABLE]
)
def test_refusals_never_offer_the_retry_that_is_refused_again(kind: FailureKind) -> None:
    said = explain(JobStatus.FAILED, kind.value, None)
    assert said is not None and Action.RETRY not in said.actions


def test_old_rows_cancelled_jobs_and_live_jobs() -> None:
    unknown = explain(JobStatus.FAILED, None, "boom")
    assert unknown is not None and unknown.kind == "unknown" and len(unknown.actions) == 3
    assert explain(JobStatus.FAILED, "a-kind-from-the-future", "x").kind == "unknown"  # type: ignore[union-attr]
    cancelled = explain(JobStatus.CANCELLED, None, "cancelled by an admin")
    assert cancelled is not None and cancelled.actions == (Action.RETRY, Action.START_OVER)
    assert explain(JobStatus.COMPLETED, None, None) is None
    assert explain(JobStatus.GENERATING_VIDEO, "provider_down", None) is None
