"""The HTTP API's request and response bodies: the original contract's JSON, field for field.

Field names are the contract's camelCase on purpose (they are the wire format other systems
of the shop already speak). These models are what the OpenAPI document is generated from,
so the document is exactly what the server sends.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from catwalk.domain import JobStatus, ModelType, ReviewMode, VideoStyle


class _Strict(BaseModel):
    # An unknown field is a client bug (a typo such as "modeltype" would silently fall back
    # to the default otherwise): refuse it with a 422 that names it.
    model_config = ConfigDict(extra="forbid")


class GenerationOptions(_Strict):
    modelType: ModelType = Field(default="female", description="Who wears the product.")
    videoStyle: VideoStyle = Field(default="smooth", description="How the camera moves.")
    review: ReviewMode | None = Field(
        default=None,
        description="Stop for an admin's approval after the keyframes (before the video is "
        "bought), before the video goes live, at both, or not at all. Default: REVIEW.",
    )


class GenerationRequest(_Strict):
    productId: str = Field(
        min_length=1,
        max_length=255,
        description="The shop's product id.",
        examples=["demo-tee"],  # a product of the demo catalog (catwalk demo)
    )
    options: GenerationOptions | None = None


class SubmittedJob(BaseModel):
    """Answer to a submission: the new job, or the product's job already in flight."""

    jobId: str
    status: JobStatus
    estimatedTime: int = Field(ge=0, description="Typical seconds until the video is ready.")


class JobResult(BaseModel):
    videoUrl: str | None = Field(description="Signed when SIGNED_URLS is on.")
    thumbnailUrl: str | None = Field(description="The poster image (signed like videoUrl).")
    duration: float | None = Field(description="Seconds of video.")


class JobCost(BaseModel):
    """US dollars spent on the job so far, failed attempts included."""

    nanoBanana: float
    pikaLabs: float
    total: float


class KeyframeCheck(BaseModel):
    """One verdict of the keyframe check (scores 0-1, higher is better)."""

    verdict: Literal["pass", "fail"] | None
    garmentMatch: float | None
    samePerson: float | None
    failedFrames: list[Literal["start", "end"]]
    issues: list[str]
    cost: float = Field(description="US dollars this judge call cost.")


class JobQuality(BaseModel):
    """The keyframe check before the video: the latest verdict, and every check made."""

    mode: Literal["off", "warn", "enforce"]
    judge: str | None = Field(description="gemini or offline.")
    verdict: Literal["pass", "fail"] | None = Field(description="The latest verdict.")
    garmentMatch: float | None
    samePerson: float | None
    failedFrames: list[Literal["start", "end"]]
    issues: list[str] = Field(description="What the judge found wrong, in words.")
    regenerations: int = Field(ge=0, description="Keyframes remade after a failed verdict.")
    regenerationCost: float = Field(description="US dollars the remade keyframes cost.")
    checkCost: float = Field(description="US dollars the judge calls cost.")
    checks: list[KeyframeCheck]


class ReviewDecisionRecord(BaseModel):
    point: Literal["keyframes", "publish"]
    decision: Literal["approve", "reject", "regenerate-start", "regenerate-end", "expired"]
    by: str
    at: str
    note: str | None = None


class JobReview(BaseModel):
    """The job's review points; ``waitingFor`` is set while it is AWAITING_APPROVAL."""

    mode: ReviewMode
    waitingFor: Literal["keyframes", "publish"] | None
    since: str | None = Field(description="When it started waiting (ISO 8601, UTC).")
    expiresAt: str | None = Field(description="Cancelled if nobody decides by then.")
    approveCost: float | None = Field(description="US dollars approving still costs.")
    decisions: list[ReviewDecisionRecord]


class ReviewDecisionBody(_Strict):
    note: str = Field(default="", max_length=1000, description="Why (kept on the timeline).")
    regenerate: Literal["start", "end"] | None = Field(
        default=None,
        description="approve only: instead of approving, remake this keyframe (pays for one "
        "image) and ask again.",
    )


class ReviewOutcome(BaseModel):
    jobId: str
    decision: str
    point: Literal["keyframes", "publish"]
    status: JobStatus


class JobFailure(BaseModel):
    """Why a failed (or cancelled) job ended, in plain words, and what may be done next."""

    kind: str = Field(
        description="The failure's class (photo_refused, keyframes_refused, provider_down, "
        "time_limit, storage, ...), 'cancelled', or 'unknown' for jobs from before classes."
    )
    reason: str
    nextAction: str
    actions: list[Literal["retry", "new_keyframes", "start_over"]] = Field(
        description="retry: POST .../retry (paid steps reused); new_keyframes: POST .../retry "
        "with {newKeyframes: true}; start_over: POST a new job for the product."
    )


class RetryBody(_Strict):
    newKeyframes: bool = Field(
        default=False,
        description="Make new keyframes and a new video (pays for both again) instead of "
        "reusing them: the way past a video model that refused the keyframes.",
    )


class JobState(BaseModel):
    """One job, as the original ``GET /api/admin/video-generation/{jobId}`` returns it.

    ``result`` is present once the job is COMPLETED; ``error`` once it has failed (or a step
    failed and is being retried). ``productId`` is an addition to the original contract.
    """

    jobId: str
    productId: str
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    currentStep: str
    estimatedTimeRemaining: int | None = Field(
        description="Seconds left; 0 when completed, null when failed or cancelled."
    )
    # Absent rather than null when there is nothing to say (the contract's ``result?``,
    # ``error?``, ``cost?``); the API leaves unset fields out of the JSON.
    result: JobResult | SkipJsonSchema[None] = None
    error: str | SkipJsonSchema[None] = None
    cost: JobCost | SkipJsonSchema[None] = None
    quality: JobQuality | SkipJsonSchema[None] = None
    review: JobReview | SkipJsonSchema[None] = None
    failure: JobFailure | SkipJsonSchema[None] = None


class CostByService(BaseModel):
    nanoBanana: float
    pikaLabs: float


class DailyCost(BaseModel):
    date: dt.date = Field(description="Day of the provider calls, in LIMITS_TIMEZONE.")
    cost: float


class GenerationStats(BaseModel):
    totalJobs: int = Field(ge=0)
    completedJobs: int = Field(ge=0)
    failedJobs: int = Field(ge=0)
    totalCost: float
    costByService: CostByService
    costByDate: list[DailyCost] = Field(
        description="Every day from the first with spend to the last, oldest first (0 when none)."
    )


class ErrorBody(BaseModel):
    """Every refusal: one readable line."""

    detail: str


class LimitErrorBody(ErrorBody):
    retryAfter: int = Field(ge=0, description="Seconds until a new submission can succeed.")


class FieldIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(ErrorBody):
    """A malformed request: ``detail`` says what is wrong in one line, ``errors`` per field."""

    errors: list[FieldIssue]
