"""Step 1b: the keyframe check, between the keyframes and the video (KEYFRAME_CHECK).

A judge (clients: ``gemini`` or ``offline``) answers for the pair: does each keyframe show
the product, and do both show the same person wearing the same garment. Every verdict, its
scores and issues are saved on the job (``video_jobs.quality``) and every judge call gets a
ledger row (service ``keyframe_check``). On a failed verdict ``enforce`` remakes only the
failing frame(s), with the judge's issues in the prompt, up to ``KEYFRAME_CHECK_RETRIES``
times; a pair that never passes fails the job with the judge's issues before any video is
bought. ``warn`` records the verdict and goes on; ``off`` skips the step.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from catwalk.db import queries, session_scope
from catwalk.db.base import utcnow
from catwalk.tasks._policy import attempt, charge, retry_transient_only, wait_reporter
from prefect import get_run_logger, task
from sqlalchemy.orm.attributes import flag_modified

from catwalk import pricing
from catwalk.clients import factory
from catwalk.clients.keys import content_type_for, object_key
from catwalk.clients.limits import provider_slot
from catwalk.clients.media import load_product_image
from catwalk.config import get_settings
from catwalk.domain import ImageRequest, JobOptions, JobStatus, JudgeRequest, KeyframeVerdict, Pose
from catwalk.errors import JobCancelled, KeyframeCheckFailed, ProviderError

_STEP = "quality"


def _save(job: Any, quality: dict[str, Any]) -> None:
    job.quality = copy.deepcopy(quality)
    flag_modified(job, "quality")


def _record_failure(job_id: str, exc: ProviderError, run: int) -> None:
    with session_scope() as session:
        if exc.usage is not None:
            charge(session=session, job_id=job_id, usage=exc.usage, succeeded=False, note=str(exc))
        queries.record_event(
            session=session, job_id=job_id, step=_STEP, kind="failed", attempt=run, message=str(exc)
        )


def _feedback(verdict: dict[str, Any], pose: Pose) -> tuple[str, ...]:
    """The issues that concern ``pose`` (or the pair), for the remade frame's prompt."""
    issues = [str(i) for i in verdict.get("issues", [])]
    other = "end" if pose == "start" else "start"
    mine = [i for i in issues if not i.lower().startswith(other)]
    return tuple(mine or issues)[:5]


@task(name="check-keyframes", retry_condition_fn=retry_transient_only)
def check_keyframes(job_id: str, keyframe_keys: dict[str, str]) -> dict[str, str]:
    """Judge the keyframes; remake failing ones (enforce); return the keys the video uses.

    Idempotent across retries: a verdict already saved for exactly these frames is reused
    (never paid twice), and the regenerations already made count against the cap.
    """
    logger = get_run_logger()
    settings = get_settings()
    mode = settings.effective_keyframe_check
    if mode == "off":
        return keyframe_keys
    retries = settings.keyframe_check_retries
    judge = factory.keyframe_judge()
    store = factory.blob_store()
    run = attempt()
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        if job.cancel_requested:
            raise JobCancelled("cancelled by an admin")
        if run > 1:
            job.retry_count += 1
        queries.set_job_step(
            session=session,
            job=job,
            status=JobStatus.GENERATING_IMAGES,
            current_step="checking keyframes",
        )
        queries.record_event(
            session=session, job_id=job_id, step=_STEP, kind="started", attempt=run
        )
        quality: dict[str, Any] = copy.deepcopy(job.quality or {})
        if job.flow_run_id and quality.get("flowRunId") not in (None, job.flow_run_id):
            # An admin's retry of the job is a new run: it gets its own rounds of remakes.
            quality["rounds"] = 0
        quality.update(
            {
                "mode": mode,
                "judge": judge.name,
                "maxRegenerations": retries,
                "flowRunId": job.flow_run_id,
            }
        )
        for name, default in (("verdicts", []), ("rounds", 0), ("regenerations", 0)):
            quality.setdefault(name, default)
        quality.setdefault("checkCost", "0")
        quality.setdefault("regenerationCost", "0")
        _save(job, quality)
        keys = {**keyframe_keys, **dict(job.image_keys)}
        request_ids = dict(job.image_request_ids)
        options = JobOptions.from_mapping(job.options)
        seed, name, images, product_id = (
            job.identity_seed,
            job.product.name,
            list(job.product.images),
            job.product_id,
        )
        estimated = job.estimated_cost

    photo = load_product_image(images, product_id=product_id)
    while True:
        frames = {pose: request_ids.get(pose) for pose in ("start", "end")}
        last = quality["verdicts"][-1] if quality["verdicts"] else None
        if last is not None and last.get("frames") == frames:
            verdict = last  # judged before a retry: same frames, same answer, not paid again
        else:
            request = JudgeRequest(
                product_image=photo,
                product_image_mime="image/jpeg",
                start_image=store.get_bytes(keys["start"]),
                end_image=store.get_bytes(keys["end"]),
                image_mime=content_type_for(keys["start"]),
                model_type=options.model_type,
                product_name=name,
            )
            try:
                # The judge shares the image model's provider (and quota) when it is Gemini.
                with provider_slot("image", on_wait=wait_reporter(job_id)):
                    answer: KeyframeVerdict = judge.judge(request)
            except ProviderError as exc:
                _record_failure(job_id, exc, run)
                if mode == "warn":
                    # warn never stops a job: no verdict is recorded as none, and it goes on.
                    logger.warning("job %s: keyframe check skipped: %s", job_id, exc)
                    return keys
                raise
            with session_scope() as session:
                job = queries.get_job(session=session, job_id=job_id)
                assert job is not None
                charge(session=session, job_id=job_id, usage=answer.usage)
                cost = pricing.charge_for(answer.usage).amount
                verdict = {
                    **answer.to_dict(),
                    "frames": frames,
                    "round": quality["rounds"],
                    "cost": str(cost),
                    "at": utcnow().isoformat(),
                }
                quality["verdicts"].append(verdict)
                quality["checkCost"] = str(Decimal(quality["checkCost"]) + cost)
                quality["verdict"] = verdict["verdict"]
                quality["garmentMatch"] = verdict["garmentMatch"]
                quality["samePerson"] = verdict["samePerson"]
                quality["issues"] = verdict["issues"]
                _save(job, quality)
                queries.record_event(
                    session=session,
                    job_id=job_id,
                    step=_STEP,
                    kind="info",
                    attempt=run,
                    message=f"{judge.name} judge: {verdict['verdict']}"
                    + (f" ({'; '.join(verdict['issues'])})" if verdict["issues"] else ""),
                )
        if verdict["verdict"] == "pass" or mode == "warn":
            with session_scope() as session:
                queries.record_event(
                    session=session,
                    job_id=job_id,
                    step=_STEP,
                    kind="succeeded",
                    attempt=run,
                    message="keyframes passed the check"
                    if verdict["verdict"] == "pass"
                    else "keyframes failed the check; KEYFRAME_CHECK=warn goes on to the video",
                )
            logger.info("job %s: keyframe check %s", job_id, verdict["verdict"])
            return keys

        issues = "; ".join(verdict["issues"]) or "no reason given"
        if quality["rounds"] >= retries:
            made = quality["regenerations"]
            raise KeyframeCheckFailed(
                f"keyframes failed the check after {made} regeneration"
                f"{'' if made == 1 else 's'}: {issues}",
                issues=tuple(verdict["issues"]),
            )
        failing: list[Pose] = [p for p in ("start", "end") if p in verdict["failedFrames"]]
        with session_scope() as session:
            job = queries.get_job(session=session, job_id=job_id)
            assert job is not None
            if job.cancel_requested:
                raise JobCancelled("cancelled by an admin")
            spent = job.total_cost
        # Never past what was reserved for this job (the worst case, when prices are set).
        needed = pricing.estimate_calls_cost(
            settings, images=len(failing), video=True
        ) + pricing.estimate_judge_cost(settings)
        if estimated > 0 and spent + needed > estimated:
            raise KeyframeCheckFailed(
                f"keyframes failed the check and remaking them would pass the job's reserved "
                f"budget: {issues}",
                issues=tuple(verdict["issues"]),
            )
        quality["rounds"] += 1
        for pose in failing:
            _remake(job_id, pose, photo, options, seed, name, product_id, verdict, quality, run)
            with session_scope() as session:
                job = queries.get_job(session=session, job_id=job_id)
                assert job is not None
                keys, request_ids = dict(job.image_keys), dict(job.image_request_ids)
        logger.info("job %s: remade %s after the keyframe check", job_id, ", ".join(failing))


def _remake(
    job_id: str,
    pose: Pose,
    photo: bytes,
    options: JobOptions,
    seed: int,
    name: str,
    product_id: str,
    verdict: dict[str, Any],
    quality: dict[str, Any],
    run: int,
) -> None:
    """Buy one keyframe again with the judge's issues in the prompt (same steps as images.py)."""
    generator = factory.image_generator()
    store = factory.blob_store()
    request = ImageRequest(
        product_image=photo,
        product_image_mime="image/jpeg",
        model_type=options.model_type,
        pose=pose,
        identity_seed=seed,
        product_name=name,
        feedback=_feedback(verdict, pose),
    )
    try:
        with provider_slot("image", on_wait=wait_reporter(job_id)):
            image = generator.generate(request)
    except ProviderError as exc:
        _record_failure(job_id, exc, run)
        raise
    key = object_key(product_id, job_id, f"keyframe-{pose}")
    store.put_bytes(key, image.data, image.mime_type)
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        charge(
            session=session,
            job_id=job_id,
            usage=image.usage,
            note=f"{pose} keyframe remade after the keyframe check",
        )
        cost = pricing.charge_for(image.usage).amount
        job.image_keys = {**job.image_keys, pose: key}
        job.image_request_ids = {**job.image_request_ids, pose: image.usage.request_id}
        quality["regenerations"] += 1
        quality["regenerationCost"] = str(Decimal(quality["regenerationCost"]) + cost)
        _save(job, quality)
        queries.record_event(
            session=session,
            job_id=job_id,
            step=_STEP,
            kind="info",
            attempt=run,
            message=f"{pose} keyframe remade (regeneration {quality['regenerations']})",
        )
