"""The ``catwalk`` commands."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from catwalk.cli import fakes_cmd
from catwalk.cli.api_cmd import api
from catwalk.cli.worker_cmd import worker
from catwalk.clients import factory
from catwalk.clients.media import identify_image, read_image_source
from catwalk.config import get_settings
from catwalk.db import queries, session_scope
from catwalk.db.models import VideoJob
from catwalk.domain import JobStatus
from catwalk.errors import InputError

app = typer.Typer(
    help="catwalk turns product photos into on-model product videos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
products_app = typer.Typer(help="List, add and import products.", invoke_without_command=True)
app.add_typer(products_app, name="products")
app.command(name="fakes")(fakes_cmd.fakes)

console = Console()
err = Console(stderr=True)


def _urls(job: VideoJob) -> tuple[str | None, str | None]:
    store = factory.blob_store()
    return (
        store.url(job.video_key) if job.video_key else None,
        store.url(job.poster_key) if job.poster_key else None,
    )


def _contract(job: VideoJob) -> dict[str, Any]:
    video_url, poster_url = _urls(job) if job.status is JobStatus.COMPLETED else (None, None)
    return queries.job_to_contract(job, video_url=video_url, poster_url=poster_url)


def _display_url(url: str | None) -> str:
    return url.removeprefix("file://") if url else "-"


@products_app.callback()
def products_list(ctx: typer.Context) -> None:
    """Without a subcommand: list products with their current video."""
    if ctx.invoked_subcommand is not None:
        return
    store = factory.blob_store()
    with session_scope() as session:
        rows = queries.list_products(session=session)
        if not rows:
            console.print("No products yet. Add one with [bold]catwalk products add NAME IMAGE[/].")
            return
        table = Table("id", "name", "images", "video")
        for p in rows:
            video = store.url(p.video_key) if p.video_key else None
            table.add_row(p.id, p.name, str(len(p.images)), _display_url(video))
    console.print(table)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "product"


def _image_ref(raw: str, *, base: Path) -> str:
    if raw.startswith(("http://", "https://")):
        return raw
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = base / path
    return str(path.resolve())


@products_app.command("add")
def products_add(
    name: str,
    images: Annotated[list[str], typer.Argument(help="Image paths or URLs.")],
    product_id: Annotated[
        str | None, typer.Option("--id", help="Product id (default: from name).")
    ] = None,
) -> None:
    """Add (or update) a product with its photos."""
    refs = [_image_ref(i, base=Path.cwd()) for i in images]
    for ref in refs:
        # A typo in a path is cheaper to catch now than at generation time. URLs are left
        # to the job: the shop's CDN may not be reachable from this machine.
        if not ref.startswith(("http://", "https://")):
            identify_image(read_image_source(ref), source=ref)
    with session_scope() as session:
        product = queries.upsert_product(
            session=session, product_id=product_id or _slug(name), name=name, images=refs
        )
        console.print(f"product [bold]{product.id}[/] saved with {len(refs)} image(s)")


def _read_catalog(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
        if not isinstance(rows, list):
            raise InputError(f"{path} must hold a JSON list of products")
        return rows
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"id", "name", "images"} <= set(reader.fieldnames):
        raise InputError(f"{path} must be a CSV with the header id,name,images")
    return [{**row, "images": [i for i in (row["images"] or "").split("|") if i]} for row in reader]


@products_app.command("import")
def products_import(file: Path) -> None:
    """Import products from CSV (id,name,images with images separated by |) or JSON."""
    rows = _read_catalog(file)
    base = file.resolve().parent
    count = 0
    with session_scope() as session:
        for n, row in enumerate(rows, start=1):
            if not isinstance(row, dict) or not row.get("id") or not row.get("name"):
                raise InputError(f"{file}: product {n} needs an id and a name")
            images = row.get("images") or []
            if isinstance(images, str):
                images = [i for i in images.split("|") if i]
            queries.upsert_product(
                session=session,
                product_id=str(row["id"]),
                name=str(row["name"]),
                images=[_image_ref(str(i), base=base) for i in images],
            )
            count += 1
    console.print(f"imported {count} product(s) from {file}")


def _follow(job_id: str, *, label: str) -> VideoJob:
    """Show a job's progress until it ends; returns the final job."""
    with Progress(
        TextColumn("[bold]{task.fields[label]}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("job", total=100, label=label, step="queued")
        while True:
            with session_scope() as session:
                job = queries.get_job(session=session, job_id=job_id)
                assert job is not None
                progress.update(
                    bar, completed=job.progress, step=job.wait_reason or job.current_step
                )
                if job.status.is_final:
                    return job
            time.sleep(0.5)


@app.command()
def generate(
    product_id: str,
    model_type: Annotated[str, typer.Option("--model-type", help="female or male")] = "female",
    style: Annotated[str, typer.Option("--style", help="smooth or dynamic")] = "smooth",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end.")] = False,
) -> None:
    """Start a video job for a product; prints the job id at once."""
    from catwalk.submission import submit_job

    try:
        submission = submit_job(product_id, {"modelType": model_type, "videoStyle": style})
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    note = "" if submission.created else " (already in flight)"
    console.print(f"job [bold]{submission.job_id}[/]{note}")
    if not wait:
        return
    job = _follow(submission.job_id, label=product_id)
    if job.status is JobStatus.COMPLETED:
        video_url, _ = _urls(job)
        console.print(f"[green]COMPLETED[/] video: {_display_url(video_url)}")
        return
    err.print(f"[red]{job.status.value}[/]: {job.error_message}")
    raise typer.Exit(1)


@app.command()
def status(job_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one job (the original GET job contract)."""
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None:
            raise InputError(f"unknown job {job_id!r}")
        payload = _contract(job)
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    table = Table(show_header=False)
    for key, value in payload.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


@app.command()
def jobs(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(help="How many of the newest jobs.")] = 50,
) -> None:
    """List the newest jobs."""
    with session_scope() as session:
        payload = [_contract(job) for job in queries.list_jobs(session=session, limit=limit)]
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    table = Table("job", "product", "status", "progress", "step", "cost $", "error")
    for row in payload:
        table.add_row(
            row["jobId"][:12],
            row["productId"],
            row["status"],
            f"{row['progress']}%",
            row["currentStep"],
            f"{row['cost']['total']:.4f}",
            row.get("error") or "",
        )
    console.print(table)


@app.command("run-job", hidden=True)
def run_job(job_id: str) -> None:
    """Run a recorded job's flow in this process (what the local launcher starts)."""
    from catwalk.flows.generate_product_video import generate_product_video

    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        if job is None:
            raise InputError(f"unknown job {job_id!r}")
        product_id, options = job.product_id, dict(job.options)
    generate_product_video(product_id, options, job_id, return_state=True)


@app.command()
def demo(
    limit: Annotated[int, typer.Option(help="How many demo products to render.")] = 4,
) -> None:
    """Seed the demo catalog, make a video for each product, and show where they are."""
    from catwalk.cli.demo import run_demo

    run_demo(limit=limit, console=console)


@app.command()
def doctor() -> None:
    """Check that the bookkeeping adds up: jobs, reservations, alerts, provider requests."""
    from catwalk.db import jobs
    from catwalk.db.session import db_location

    settings = get_settings()
    with session_scope() as session:
        problems = jobs.check_invariants(session=session)
    # One line per finding, never wrapped: operators grep this output.
    console.print(f"database: {db_location(settings.effective_database_url)}", soft_wrap=True)
    if not problems:
        console.print("ok: every invariant holds")
        return
    for problem in problems:
        console.print(f"problem: {problem}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def where() -> None:
    """Show where catwalk keeps its data."""
    settings = get_settings()
    console.print(f"home:     {settings.catwalk_home}")
    console.print(f"database: {settings.effective_database_url.split('@')[-1]}")
    console.print(f"media:    {settings.media_dir}")


app.command()(api)
from catwalk.cli.alerts_cmd import alerts_app as _alerts_app
from catwalk.cli.stats_cmd import stats as _stats

app.command("stats")(_stats)
app.add_typer(_alerts_app, name="alerts")
app.command()(worker)
from catwalk.cli.dashboard_cmd import register as _register_dashboard

_register_dashboard(app)
