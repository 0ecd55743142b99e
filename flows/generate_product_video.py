"""The per-product video flow: keyframes, video, publish. Orchestration only."""

from __future__ import annotations

from typing import Any

from catwalk.tasks import (
    animate_keyframes,
    check_keyframes,
    fail_job,
    generate_keyframes,
    publish_video,
    start_job,
)
from catwalk.tasks._policy import apply_retry_policy
from catwalk.tasks.publish import verify_video
from catwalk.tasks.report import report_job, route_catwalk_logs, video_run_name
from catwalk.tasks.review import review_gate, review_points
from prefect import Flow, flow
from prefect.exceptions import Pause

from catwalk.config import Settings, get_settings


# The flow as decorated: no option read from settings (none is read at import time).
# ``generate_product_video`` below is this flow with its settings applied.
@flow(
    name="generate-product-video",
    flow_run_name=video_run_name,
    on_running=[route_catwalk_logs],
    log_prints=False,
)
def _generate_product_video(
    product_id: str, options: dict[str, Any] | None = None, job_id: str | None = None
) -> dict[str, Any]:
    """Make a product's on-model video and publish it on the product.

    ``job_id`` is the job a submission recorded; without it (a run started from the Prefect
    UI or CLI) the flow records the job itself, or stops if the product already has one.
    """
    attached = start_job(product_id, options, job_id)
    if attached is None:
        return {"jobId": job_id, "status": "skipped"}
    try:
        points = review_points(attached)
        keyframes = generate_keyframes(attached)
        keyframes = check_keyframes(attached, keyframes)
        # An admin may look at the keyframes before the video is bought, and remake a frame.
        gate = "go"
        while "keyframes" in points and (gate := review_gate(attached, "keyframes")) == "again":
            keyframes = generate_keyframes(attached)
            keyframes = check_keyframes(attached, keyframes)
        if gate != "go":
            return _stopped(attached, gate)
        video = animate_keyframes(attached, keyframes)
        if "publish" in points:
            # ... and at the stored, checked video, before the product points at it.
            verify_video(attached, video)
            if (gate := review_gate(attached, "publish")) != "go":
                return _stopped(attached, gate)
        published = publish_video(attached, video)
    except Pause:
        raise  # suspended for review: the run resumes when an admin decides
    except BaseException as exc:
        fail_job(attached, exc)
        report_job(attached)
        raise
    report_job(attached)
    return {"jobId": attached, "status": "COMPLETED", **published}


def _stopped(job_id: str, gate: str) -> dict[str, Any]:
    """The run ends early: the job waits for a decision (embedded mode) or was rejected."""
    report_job(job_id)
    status = "AWAITING_APPROVAL" if gate == "waiting" else "CANCELLED"
    return {"jobId": job_id, "status": status}


# The flow's own time limit is a backstop past the job's: the steps end a job at
# JOB_TIMEOUT_SECONDS themselves (cancelling the provider request, saying which step ran
# out of time); Prefect's timeout, racing them at the same instant, would only say "crashed".
FLOW_TIMEOUT_GRACE_SECONDS = 30


def build(settings: Settings | None = None) -> Flow[..., dict[str, Any]]:
    """The flow with the options that come from settings: its time limit, the steps' retries.

    Built when the flow is about to run or be deployed, from the settings of that moment.
    """
    settings = settings or get_settings()
    apply_retry_policy(
        generate_keyframes, check_keyframes, animate_keyframes, publish_video, settings=settings
    )
    return _generate_product_video.with_options(
        timeout_seconds=settings.job_timeout_seconds + FLOW_TIMEOUT_GRACE_SECONDS
    )


def __getattr__(name: str) -> Any:
    # ``generate_product_video`` is built on access (PEP 562), so the deployment entrypoint
    # (prefect.yaml: flows/generate_product_video.py:generate_product_video), `prefect
    # deploy` and ``from ... import generate_product_video`` all get the configured flow
    # while importing this module reads no setting.
    if name == "generate_product_video":
        return build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    import sys

    build()(sys.argv[1] if len(sys.argv) > 1 else "demo-tee")
