"""What an operator sees of a job in the Prefect UI: the run's name, its logs, its artifacts.

May import db, clients, config, domain; never flows or dashboards. Nothing here decides a
job's fate: a failure to report is logged and the job's own outcome stands.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from catwalk.db import queries, session_scope
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from catwalk.clients import factory, links
from catwalk.config import get_settings

logger = logging.getLogger(__name__)

#: The package logger whose records join the flow-run logs (PREFECT_LOGGING_EXTRA_LOGGERS).
CATWALK_LOGGER = "catwalk"


def job_label(job_id: str | None) -> str:
    """The short form of a job id the CLI and the run names show (first 8 characters)."""
    return job_id[:8] if job_id else "new"


def video_run_name() -> str:
    """``flow_run_name`` of generate-product-video: ``video · <product> · <job8>``.

    A run started straight from a deployment has no job yet; ``report_job`` renames it
    once the flow has recorded one.
    """
    params = flow_run.parameters or {}
    return f"video · {params.get('product_id') or '?'} · {job_label(params.get('job_id'))}"


def route_catwalk_logs(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_running`` hook: let catwalk's own INFO lines reach the flow-run logs.

    Prefect attaches its API handler to the extra loggers but leaves their level alone, so
    they inherit the root's WARNING and every INFO line from a client is dropped (the
    caveat in STYLE.md §19). Set only when nobody chose a level for the package.
    """
    package = logging.getLogger(CATWALK_LOGGER)
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)


def artifact_key(kind: str, name: str) -> str:
    """An artifact key Prefect accepts (lowercase letters, digits, dashes)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{kind}-{slug}"[:100].rstrip("-")


def _media_markdown(label: str, url: str | None, *, image: bool) -> str:
    if not url:
        return f"- {label}: none"
    if url.startswith(("http://", "https://")):
        return f"![{label}]({url})" if image else f"- {label}: [{url}]({url})"
    # A file:// URL is useless to a browser; the path at least tells the operator where.
    return f"- {label}: `{url.removeprefix('file://')}`"


def job_markdown(job: Any, *, urls: dict[str, str | None]) -> str:
    """The job summary artifact: status, keyframes, video link, cost."""
    lines = [
        f"# {job.product_id} · job {job.id}",
        "",
        f"**{job.status.value}** at {job.progress}% ({job.current_step})",
        "",
    ]
    if job.error_message:
        lines += [f"Error: {job.error_message}", ""]
    for pose in ("start", "end"):
        lines.append(_media_markdown(f"{pose} keyframe", urls.get(pose), image=True))
    lines.append(_media_markdown("video", urls.get("video"), image=False))
    lines.append(_media_markdown("poster", urls.get("poster"), image=True))
    lines += ["", f"Total cost: ${job.total_cost:.4f}"]
    return "\n".join(lines)


def ledger_rows(entries: Any) -> list[dict[str, Any]]:
    """The job's ledger as table-artifact rows (every attempt, failed ones too)."""
    return [
        {
            "service": e.service,
            "provider": e.provider,
            "operation": e.operation,
            "model": e.model,
            "units": f"{e.units} {e.unit}",
            "amount_usd": f"{e.amount:.4f}",
            "attempt": e.attempt,
            "succeeded": e.succeeded,
            "request_id": e.provider_request_id or "",
        }
        for e in entries
    ]


def _rename_run(name: str) -> None:
    from prefect import get_client

    if not flow_run.id or flow_run.name == name:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_name(flow_run.id, name)


@task(name="report-job", cache_policy=NO_CACHE)
def report_job(job_id: str) -> None:
    """Show in the Prefect UI how a job ended: artifacts (summary, ledger, status). The
    completion webhook went with the ending itself (``catwalk.lifecycle``)."""
    from prefect.artifacts import (
        create_markdown_artifact,
        create_progress_artifact,
        create_table_artifact,
    )

    run_logger = get_run_logger()
    try:
        settings = get_settings()
        store = factory.blob_store(settings)
        with session_scope(settings) as session:
            job = queries.get_job(session=session, job_id=job_id)
            if job is None:
                return
            keys = {
                **{pose: (job.image_keys or {}).get(pose) for pose in ("start", "end")},
                "video": job.video_key,
                "poster": job.poster_key,
            }
            # The API's /media links when API_PUBLIC_URL says where it is, else the store's.
            urls = {
                name: links.fetchable_url(store, key, settings=settings) or store.url(key)
                if key
                else None
                for name, key in keys.items()
            }
            markdown = job_markdown(job, urls=urls)
            rows = ledger_rows(queries.ledger_for_job(session=session, job_id=job_id))
            status, progress, product_id = job.status.value, job.progress, job.product_id
        key = artifact_key("video", product_id)
        create_markdown_artifact(markdown, key=key, description=f"job {job_id}: {status}")
        create_table_artifact(
            rows, key=f"{key}-ledger"[:100], description=f"ledger of job {job_id}"
        )
        create_progress_artifact(
            float(progress), key=f"{key}-status"[:100], description=f"job {job_id}: {status}"
        )
        _rename_run(f"video · {product_id} · {job_label(job_id)}")
        # A plain catwalk logger on purpose: it shows the package's INFO lines reach the run.
        logger.info("job %s: artifacts %s, %s-ledger, %s-status recorded", job_id, key, key, key)
    except Exception:  # reporting must never turn a finished (paid) job into a failed run
        run_logger.warning("job %s: artifacts not recorded", job_id, exc_info=True)


@task(name="deliver-pending-webhooks", cache_policy=NO_CACHE)
def redeliver_webhooks(limit: int = 200) -> dict[str, int]:
    """Send completion events whose webhook delivery failed earlier (the receiver was down)."""
    from catwalk.webhooks import deliver_pending_webhooks

    return {"delivered": deliver_pending_webhooks(limit=limit)}
