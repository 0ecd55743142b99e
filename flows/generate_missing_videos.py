"""The nightly batch: a job for every product without a video (or with a stale one)."""

from __future__ import annotations

from catwalk.tasks.batch import find_products_needing_video, start_video_jobs
from prefect import flow


@flow(name="generate-missing-videos", log_prints=False)
def generate_missing_videos(
    stale_after_days: int = 30, limit: int | None = None
) -> dict[str, object]:
    """Start a per-product run for each product that needs a video, within the daily limit.

    Each job is its own ``generate-product-video`` run: the work pool's limit spreads them
    over the workers, and one product's failure stays its own.
    """
    product_ids = find_products_needing_video(stale_after_days, limit)
    return start_video_jobs(product_ids)


if __name__ == "__main__":
    generate_missing_videos()
