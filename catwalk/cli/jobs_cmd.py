"""``catwalk retry``, ``catwalk cancel``, bulk ``generate``, and job-id prefixes for every command.

Data (ids, paths, provider messages such as ``[model_moderated]``) is printed with markup off
and soft wrapping on, so Rich neither swallows brackets nor breaks a path in the middle.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from catwalk.errors import InputError, LimitExceeded

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def say(text: str, *, error: bool = False) -> None:
    """Print plain data: no markup interpretation, no mid-string wrapping."""
    (err if error else console).print(text, markup=False, highlight=False)


def resolve_job_id(session: Any, given: str) -> str:
    """The full id of the one job whose id is ``given`` or starts with it (>= 6 characters)."""
    from catwalk.db import queries

    return queries.resolve_job_id(session=session, given=given)


def full_job_id(given: str) -> str:
    """``resolve_job_id`` in its own session (for commands that then call submission.*)."""
    from catwalk.db import session_scope

    with session_scope() as session:
        return resolve_job_id(session, given)


def retry(
    job_id: Annotated[str, typer.Argument(help="Job id or a unique prefix (6+ characters).")],
    new_keyframes: Annotated[
        bool,
        typer.Option(
            "--new-keyframes",
            help="Make new keyframes and a new video (pays for both again): the way past a "
            "video model that refused the keyframes.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run a failed or cancelled job again, reusing the steps it already paid for."""
    from catwalk.submission import retry_cost, retry_job

    full = full_job_id(job_id)
    cost = retry_cost(full, new_keyframes=new_keyframes)
    submission = retry_job(full, new_keyframes=new_keyframes)
    if as_json:
        print(
            json.dumps(
                {
                    "jobId": full,
                    "status": submission.status.value,
                    "estimatedCost": None if cost.amount is None else float(cost.amount),
                }
            )
        )
        return
    price = "unknown price" if cost.amount is None else f"at most ${cost.amount:.4f}"
    say(f"job {full} retrying ({price}; {cost.images_to_make} keyframe(s) to make)")


def cancel(
    job_id: Annotated[str, typer.Argument(help="Job id or a unique prefix (6+ characters).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stop a job: at once if it has not started, at its next check if it is running."""
    from catwalk.submission import cancel_job

    full = full_job_id(job_id)
    status = cancel_job(full)
    if as_json:
        print(json.dumps({"jobId": full, "status": status.value}))
        return
    if status.value == "CANCELLED":
        say(f"job {full} cancelled")
    elif status.is_final:
        say(f"job {full} had already ended: {status.value}")
    else:
        say(f"job {full}: cancel requested, it stops at its next check ({status.value})")


def ids_from_csv(path: Path) -> list[str]:
    """Product ids from a CSV: an ``id`` (or ``product_id``) column, else the first column."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    for name in ("id", "product_id", "productid"):
        if name in header:
            col = header.index(name)
            return [r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()]
    return [r[0].strip() for r in rows if r and r[0].strip()]


def products_for_bulk(
    *, all_missing: bool, ids: str | None, from_csv: Path | None, stale_after_days: int = 30
) -> list[str]:
    """The product ids a bulk ``generate`` works through, in order, without duplicates."""
    import datetime as dt

    from catwalk.db import queries, session_scope
    from catwalk.db.base import utcnow

    chosen: list[str] = []
    if ids:
        chosen += [i.strip() for i in ids.split(",") if i.strip()]
    if from_csv is not None:
        chosen += ids_from_csv(from_csv)
    if all_missing:
        with session_scope() as session:
            chosen += queries.products_needing_video(
                session=session, stale_before=utcnow() - dt.timedelta(days=stale_after_days)
            )
    return list(dict.fromkeys(chosen))


def generate_many(product_ids: Iterable[str], options: dict[str, str], *, as_json: bool) -> None:
    """Submit one job per product within the daily limit, with a progress bar.

    Same path as one ``generate`` (``submission.submit_job``): a limit refusal stops the
    rest cleanly (nothing recorded for them); one product's bad photo skips only it.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from catwalk.submission import submit_job

    product_ids = list(product_ids)
    result: dict[str, Any] = {"started": {}, "inFlight": {}, "skipped": {}, "stopped": None}
    with Progress(
        TextColumn("submitting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[product]}", markup=False),
        console=err,
        disable=as_json,
    ) as progress:
        bar = progress.add_task("bulk", total=len(product_ids), product="")
        for product_id in product_ids:
            progress.update(bar, product=product_id)
            try:
                submission = submit_job(product_id, options)
            except LimitExceeded as exc:
                result["stopped"] = exc.user_message
                break
            except (InputError, ValueError) as exc:
                result["skipped"][product_id] = getattr(exc, "user_message", str(exc))
            else:
                where = "started" if submission.created else "inFlight"
                result[where][product_id] = submission.job_id
            progress.advance(bar)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for product_id, job_id in result["started"].items():
            say(f"job {job_id} {product_id}")
        for product_id, job_id in result["inFlight"].items():
            say(f"job {job_id} {product_id} (already in flight)")
        for product_id, why in result["skipped"].items():
            say(f"skipped {product_id}: {why}", error=True)
        say(
            f"{len(result['started'])} job(s) started, {len(result['inFlight'])} already in "
            f"flight, {len(result['skipped'])} skipped"
        )
        if result["stopped"]:
            say(f"stopped at the limit: {result['stopped']}", error=True)
    if result["stopped"] and not result["started"] and not result["inFlight"]:
        raise typer.Exit(1)
