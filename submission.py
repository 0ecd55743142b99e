"""Submitting a video job: the one path the CLI, the dashboard and the HTTP API share.

``submit_job`` validates the request, records the job (or returns the product's job in
flight), and hands it to a launcher that starts the flow run in the background. It answers
as soon as the job is recorded: the flow never runs inside the request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import pricing
from clients.media import identify_image, read_image_source
from config import Settings, get_settings
from db import limits, queries, session_scope
from domain import JobOptions, JobStatus
from errors import ProductImageError

# Typical end-to-end time of a job with the real providers (keyframes ~2x10 s, Pika queue
# and render ~60-120 s, publish a few seconds): the contract's ``estimatedTime``.
ESTIMATED_JOB_SECONDS = 150


@dataclass(frozen=True, slots=True)
class Submission:
    job_id: str
    status: JobStatus
    created: bool
    estimated_time: int


class Launcher(Protocol):
    """Starts the flow run for a recorded job; returns the run's id when known."""

    def launch(self, *, job_id: str, product_id: str, options: dict[str, Any]) -> str | None: ...


class LocalProcessLauncher:
    """Embedded mode: one background process per job (``catwalk run-job``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def launch(self, *, job_id: str, product_id: str, options: dict[str, Any]) -> str | None:
        logs = self._settings.logs_dir
        logs.mkdir(parents=True, exist_ok=True)
        # The child must see the same home and database even when this process's settings
        # were built in code (tests, the dashboard) rather than read from the environment.
        env = {
            **os.environ,
            "CATWALK_HOME": str(self._settings.catwalk_home),
            "DATABASE_URL": self._settings.effective_database_url,
        }
        with open(logs / f"job-{job_id}.log", "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "cli", "run-job", job_id],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the CLI, the dashboard's rerun, a Ctrl-C
                env=env,
            )
        return None


def default_launcher(settings: Settings) -> Launcher:
    if settings.launcher == "local":
        return LocalProcessLauncher(settings)
    from deployments.launcher import DeploymentLauncher

    return DeploymentLauncher(settings)


def check_product_image(images: list[str], *, product_id: str) -> None:
    """Refuse at once a product with no image or a local file that is not an image.

    URLs are checked by the job itself: fetching them here could break the promise that
    a submission answers within a second.
    """
    if not images:
        raise ProductImageError(f"product {product_id!r} has no image")
    first = images[0]
    if not first.startswith(("http://", "https://")):
        # The header says whether it is an image; decoding the pixels (milliseconds to tens
        # of milliseconds a photo) is left to the job, which re-encodes it anyway.
        identify_image(read_image_source(first), source=first)


def submit_job(
    product_id: str,
    options: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    launcher: Launcher | None = None,
) -> Submission:
    """Record a job for the product and start it in the background.

    Raises ``LimitExceeded`` (and records nothing) when today's generation limit or budget
    is used up; a product's job in flight is returned without using another generation.
    """
    settings = settings or get_settings()
    job_options = JobOptions.from_mapping(options)
    estimate = pricing.estimate_job_cost(settings)
    with session_scope(settings) as session:
        product = queries.get_product(session=session, product_id=product_id)
        check_product_image(list(product.images), product_id=product_id)
        job, created = limits.admit_job(
            session=session,
            settings=settings,
            product_id=product_id,
            options=job_options,
            estimated_cost=estimate,
        )
        submission = Submission(
            job_id=job.id, status=job.status, created=created, estimated_time=ESTIMATED_JOB_SECONDS
        )
    if created:
        launcher = launcher or default_launcher(settings)
        run_id = launcher.launch(job_id=submission.job_id, product_id=product_id, options=job_options.to_dict())
        if run_id:
            with session_scope(settings) as session:
                job = queries.get_job(session=session, job_id=submission.job_id)
                if job is not None and job.flow_run_id is None:
                    job.flow_run_id = run_id
    return submission
