"""Step 1: two keyframes of a model wearing the product (Nano Banana or offline)."""

from __future__ import annotations

import functools

from catwalk.db import jobs, queries, retry_db, session_scope
from catwalk.tasks._policy import (
    attempt,
    charge,
    retry_transient_only,
    survives_db_outage,
    wait_reporter,
)
from catwalk.tasks.slots import slot_book
from prefect import get_run_logger, task

from catwalk.clients import factory
from catwalk.clients.keys import object_key
from catwalk.clients.limits import provider_slot
from catwalk.clients.media import load_product_image
from catwalk.domain import POSES, GeneratedImage, ImageRequest, JobOptions, JobStatus
from catwalk.errors import ProviderError

_PROGRESS_AFTER = {"start": 25, "end": 45}


@task(name="generate-keyframes", timeout_seconds=300, retry_condition_fn=retry_transient_only)
@survives_db_outage
def generate_keyframes(job_id: str) -> dict[str, str]:
    """Make (or reuse) the start and end keyframes; returns their storage keys by pose.

    A keyframe already stored for this job is never bought again: retries and re-runs
    start from what was paid for.
    """
    logger = get_run_logger()
    generator = factory.image_generator()
    store = factory.blob_store()
    run = attempt()
    with session_scope() as session:
        job = jobs.begin_step(
            session=session,
            job_id=job_id,
            status=JobStatus.GENERATING_IMAGES,
            current_step="generating keyframes",
            event_step="images",
            attempt=run,
        )
        product = job.product
        job.image_provider = generator.name
        keys = dict(job.image_keys)
        options = JobOptions.from_mapping(job.options)
        seed, name, images = job.identity_seed, product.name, list(product.images)
        # A frame an admin asked to remake on review: their words, and another take.
        asked = (job.review or {}).get("remake", {})
        product_id = product.id

    # Reuse only what is really stored (a keyframe saved on the job but gone from storage,
    # say after a bucket change, is made again rather than failing the video step).
    todo = [pose for pose in POSES if pose not in keys or store.head(keys[pose]) is None]
    if not todo:
        logger.info("job %s reuses both stored keyframes", job_id)
        return keys
    photo = load_product_image(images, product_id=product_id)
    for pose in todo:
        request = ImageRequest(
            product_image=photo,
            product_image_mime="image/jpeg",
            model_type=options.model_type,
            pose=pose,
            identity_seed=seed,
            product_name=name,
            feedback=tuple(asked[pose]["feedback"]) if pose in asked else (),
            variant=int(asked[pose]["variant"]) if pose in asked else 0,
        )
        try:
            with provider_slot("image", on_wait=wait_reporter(job_id), book=slot_book(job_id)):
                image = generator.generate(request)
        except ProviderError as exc:
            _record_failure(job_id, exc, run)
            raise
        key = object_key(product_id, job_id, f"keyframe-{pose}")
        store.put_bytes(key, image.data, image.mime_type)
        keys[pose] = key
        # Paid for: recorded through a database outage rather than bought again on a rerun.
        retry_db(functools.partial(_record_keyframe, job_id, pose, keys, image))
        logger.info("job %s: %s keyframe stored at %s", job_id, pose, key)
    with session_scope() as session:
        queries.record_event(
            session=session, job_id=job_id, step="images", kind="succeeded", attempt=run
        )
    return keys


def _record_failure(job_id: str, exc: ProviderError, run: int) -> None:
    def record() -> None:
        with session_scope() as session:
            if exc.usage is not None:
                charge(
                    session=session, job_id=job_id, usage=exc.usage, succeeded=False, note=str(exc)
                )
            jobs.record_step_failure(
                session=session, job_id=job_id, step="images", message=str(exc), attempt=run
            )

    retry_db(record)


def _record_keyframe(job_id: str, pose: str, keys: dict[str, str], image: GeneratedImage) -> None:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None:
            return
        charge(session=session, job_id=job_id, usage=image.usage)
        job.image_keys = dict(keys)
        job.image_request_ids = {**job.image_request_ids, pose: image.usage.request_id}
        queries.set_job_step(
            session=session,
            job=job,
            status=JobStatus.GENERATING_IMAGES,
            current_step=f"keyframe {pose} ready",
            progress=_PROGRESS_AFTER[pose],
        )
