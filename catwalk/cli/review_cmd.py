"""``catwalk review``, ``approve``, ``reject``, ``regenerate``: decide on jobs that wait."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from catwalk.cli import tables
from catwalk.cli.jobs_cmd import full_job_id, say
from catwalk.cli.tables import Column
from catwalk.errors import InputError

_POINTS = {"keyframes": "keyframes", "publish": "video (before live)"}


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    return f"{seconds / 3600:.1f} h"


def review(
    job_id: Annotated[
        str | None, typer.Argument(help="Show one waiting job (id or a unique prefix).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the jobs waiting for a decision (oldest first), or show one with its media."""
    from catwalk import review as reviews
    from catwalk.clients import factory
    from catwalk.db.base import utcnow

    reviews.expire()  # a job past REVIEW_EXPIRES_HOURS is not offered for a decision
    queue = reviews.waiting()
    if job_id is not None:
        full = full_job_id(job_id)
        queue = [w for w in queue if w.job_id == full]
        if not queue:
            raise InputError(f"job {full} is not waiting for review")
    now = utcnow()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "jobId": w.job_id,
                        "productId": w.product_id,
                        "waitingFor": w.point,
                        "since": w.since.isoformat(),
                        "expiresAt": w.expires_at.isoformat(),
                        "approveCost": float(w.quote),
                        "spent": float(w.spent),
                    }
                    for w in queue
                ]
            )
        )
        return
    if not queue:
        say("no job waits for review")
        return
    if job_id is None:
        rows = [
            [
                w.job_id[:8],
                w.product_id,
                _POINTS[w.point],
                _age((now - w.since).total_seconds()),
                f"${w.quote:.4f}",
            ]
            for w in queue
        ]
        from catwalk.cli.jobs_cmd import console

        tables.show(
            console,
            [
                Column("job", "key", headline=True),
                Column("product", "key"),
                Column("waiting for"),
                Column("waiting"),
                Column("approve costs"),
            ],
            rows,
        )
        say("decide: catwalk approve JOB | catwalk reject JOB --note WHY | catwalk regenerate JOB")
        return
    store = factory.blob_store()
    w = queue[0]
    say(f"job {w.job_id} ({w.product_name}) waits for review of the {_POINTS[w.point]}")
    say(
        f"waiting {_age((now - w.since).total_seconds())}; expires {w.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    for pose in ("start", "end"):
        if w.image_keys.get(pose):
            say(f"  {pose} keyframe: {store.url(w.image_keys[pose])}")
    if w.point == "publish" and w.video_key:
        say(f"  new video:     {store.url(w.video_key)}")
        say(f"  live video:    {store.url(w.live_video_key) if w.live_video_key else '(none yet)'}")
    say(f"spent so far ${w.spent:.4f}; approving costs ${w.quote:.4f} more")


def _decide(job_id: str, decision: str, note: str, as_json: bool) -> None:
    from catwalk import review as reviews

    full = full_job_id(job_id)
    decided = reviews.decide(full, decision, by="cli", note=note)
    if as_json:
        print(json.dumps({"jobId": full, "decision": decision, "point": decided.point}))
        return
    if decision == "reject":
        say(f"job {full} rejected at the {_POINTS[decided.point]}: cancelled, nothing more spent")
    elif decision == "approve":
        after = "the video is being made" if decided.point == "keyframes" else "publishing"
        say(f"job {full} approved: {after}")
    else:
        say(
            f"job {full}: remaking the {decision.removeprefix('regenerate-')} keyframe; it asks again"
        )


def approve(
    job_id: Annotated[str, typer.Argument(help="Job id or a unique prefix (6+ characters).")],
    note: Annotated[str, typer.Option("--note", help="Why (kept on the timeline).")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a waiting job: buy the video (keyframes), or make the video live (publish)."""
    _decide(job_id, "approve", note, as_json)


def reject(
    job_id: Annotated[str, typer.Argument(help="Job id or a unique prefix (6+ characters).")],
    note: Annotated[str, typer.Option("--note", help="Why (kept on the timeline).")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reject a waiting job: it ends CANCELLED; an unapproved video is deleted."""
    _decide(job_id, "reject", note, as_json)


def regenerate(
    job_id: Annotated[str, typer.Argument(help="Job id or a unique prefix (6+ characters).")],
    frame: Annotated[str, typer.Option("--frame", help="start or end")] = "end",
    note: Annotated[str, typer.Option("--note", help="What is wrong with it.")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Remake one keyframe of a job waiting at the keyframes (pays for one image), then ask again."""
    if frame not in ("start", "end"):
        raise InputError(f"--frame must be start or end, not {frame!r}")
    _decide(job_id, f"regenerate-{frame}", note, as_json)


def register(app: typer.Typer) -> None:
    app.command("review")(review)
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("regenerate")(regenerate)
