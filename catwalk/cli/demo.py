"""``catwalk demo``: the whole job, end to end, on the embedded defaults."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from catwalk.catalog import DEMO_PRODUCTS, write_demo_photos
from catwalk.cli import tables
from catwalk.cli.tables import Column
from catwalk.clients import factory
from catwalk.config import get_settings
from catwalk.db import queries, session_scope
from catwalk.domain import JobStatus
from catwalk.submission import submit_job


class _InProcess:
    """A launcher that starts nothing: the demo runs each flow itself, in this process."""

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], run_key: str | None = None
    ) -> str | None:
        return None


def seed_demo_catalog() -> list[str]:
    settings = get_settings()
    photos = write_demo_photos(settings.catwalk_home / "catalog")
    with session_scope() as session:
        for product in DEMO_PRODUCTS:
            queries.upsert_product(
                session=session,
                product_id=product.id,
                name=product.name,
                images=[str(photos[product.id])],
            )
    return [p.id for p in DEMO_PRODUCTS]


def _watch(job_id: str, progress: Progress, bar: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        with session_scope() as session:
            job = queries.get_job(session=session, job_id=job_id)
            if job is not None:
                progress.update(
                    bar, completed=job.progress, step=job.wait_reason or job.current_step
                )
        stop.wait(0.3)


def run_demo(*, limit: int, console: Console) -> None:
    from catwalk.flows.generate_product_video import generate_product_video

    settings = get_settings()
    console.print(f"catwalk demo: data in [bold]{settings.catwalk_home}[/]")
    product_ids = seed_demo_catalog()[: max(1, limit)]
    started = time.monotonic()
    results = []
    with Progress(
        TextColumn("[bold]{task.fields[label]:<12}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        for product_id in product_ids:
            bar = progress.add_task("job", total=100, label=product_id, step="queued")
            submission = submit_job(product_id, {}, launcher=_InProcess())
            stop = threading.Event()
            watcher = threading.Thread(
                target=_watch, args=(submission.job_id, progress, bar, stop), daemon=True
            )
            watcher.start()
            try:
                generate_product_video(product_id, None, submission.job_id, return_state=True)
            finally:
                stop.set()
                watcher.join()
            with session_scope() as session:
                job = queries.get_job(session=session, job_id=submission.job_id)
                assert job is not None
                progress.update(bar, completed=job.progress, step=job.status.value)
                results.append(
                    (
                        product_id,
                        job.id,
                        job.status,
                        job.error_message,
                        job.video_key,
                        job.total_cost,
                    )
                )

    store = factory.blob_store()
    rows = []
    videos = []
    for product_id, job_id, status, error, video_key, cost in results:
        rows.append((product_id, job_id[:12], status.value, f"${cost:.4f}"))
        where = store.url(video_key).removeprefix("file://") if video_key else f"failed: {error}"
        videos.append(f"  {product_id}: {where}")
    tables.show(
        console,
        [
            Column("product", "key", headline=True),
            Column("job", "key", headline=True),
            Column("status"),
            Column("cost", justify="right"),
        ],
        rows,
    )
    # Full paths on lines of their own, so a terminal of any width can copy them.
    console.print("videos:", soft_wrap=True)
    for line in videos:
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    done = sum(1 for r in results if r[2] is JobStatus.COMPLETED)
    console.print(
        f"{done}/{len(results)} videos in {time.monotonic() - started:.0f} s. "
        f"Open one with any video player, or run [bold]catwalk dashboard[/]."
    )
    if done != len(results):
        raise SystemExit(1)
