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
from prefect import flow

from catwalk.config import get_settings


@flow(
    name="generate-product-video",
    timeout_seconds=get_settings().job_timeout_seconds,
    log_prints=False,
)
def generate_product_video(
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
        keyframes = generate_keyframes(attached)
        keyframes = check_keyframes(attached, keyframes)
        video = animate_keyframes(attached, keyframes)
        published = publish_video(attached, video)
    except BaseException as exc:
        fail_job(attached, exc)
        raise
    return {"jobId": attached, "status": "COMPLETED", **published}


if __name__ == "__main__":
    import sys

    generate_product_video(sys.argv[1] if len(sys.argv) > 1 else "demo-tee")
