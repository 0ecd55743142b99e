"""The ``catwalk`` commands."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from catwalk.cli import fakes_cmd, tables
from catwalk.cli.api_cmd import api
from catwalk.cli.tables import Column, Kind
from catwalk.cli.worker_cmd import worker
from catwalk.config import get_settings
from catwalk.domain import JobStatus
from catwalk.errors import InputError
from catwalk.failures import Action, explain
from catwalk.identifiers import check_id, check_image_ref, clean_name, slug

if TYPE_CHECKING:
    from catwalk.db.models import VideoJob


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
    from catwalk.clients import factory

    store = factory.blob_store()
    return (
        store.url(job.video_key) if job.video_key else None,
        store.url(job.poster_key) if job.poster_key else None,
    )


def _contract(job: VideoJob) -> dict[str, Any]:
    from catwalk.db import queries

    video_url, poster_url = _urls(job) if job.status is JobStatus.COMPLETED else (None, None)
    return queries.job_to_contract(job, video_url=video_url, poster_url=poster_url)


def _display_url(url: str | None) -> str:
    return url.removeprefix("file://") if url else "-"


@products_app.callback()
def products_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Without a subcommand: list products with their current video."""
    from catwalk.clients import factory
    from catwalk.db import queries, session_scope

    if ctx.invoked_subcommand is not None:
        return
    store = factory.blob_store()
    with session_scope() as session:
        rows = queries.list_products(session=session)
        if as_json:
            listing = [
                {
                    "id": p.id,
                    "name": p.name,
                    "images": list(p.images),
                    "videoUrl": store.url(p.video_key) if p.video_key else None,
                }
                for p in rows
            ]
            print(json.dumps(listing, indent=2))
            return
        if not rows:
            console.print("No products yet. Add one with [bold]catwalk products add NAME IMAGE[/].")
            return
        cells = [
            (
                p.id,
                f"{len(p.images)} image(s)",
                _display_url(store.url(p.video_key) if p.video_key else None),
                p.name,
            )
            for p in rows
        ]
    tables.show(
        console,
        [
            Column("id", "key", headline=True),
            Column("images"),
            Column("video", "key"),
            Column("name", "text"),
        ],
        cells,
    )


def _slug(name: str) -> str:
    return slug(name)


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
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the product if the id exists.")
    ] = False,
) -> None:
    """Add a product with its photos (--replace to overwrite an existing one)."""
    from catwalk.clients.media import identify_image, read_image_source
    from catwalk.db import queries, session_scope
    from catwalk.db.models import Product

    name = clean_name(name)
    product_id = check_id(product_id) if product_id is not None else _slug(name)
    refs = [check_image_ref(_image_ref(i, base=Path.cwd())) for i in images]
    for ref in refs:
        # A typo in a path is cheaper to catch now than at generation time. URLs are left
        # to the job: the shop's CDN may not be reachable from this machine.
        if not ref.startswith(("http://", "https://")):
            identify_image(read_image_source(ref), source=ref)
    with session_scope() as session:
        existing = session.get(Product, product_id)
        if existing is not None and not replace:
            raise InputError(
                f"product {product_id!r} exists ({existing.name!r}); "
                "pass --replace to overwrite it, or --id for another id"
            )
        product = queries.upsert_product(
            session=session, product_id=product_id, name=name, images=refs
        )
        console.print(f"product [bold]{escape(product.id)}[/] saved with {len(refs)} image(s)")


def _read_catalog(path: Path) -> list[dict[str, Any]]:
    try:
        # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text") from exc
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
    rows = []
    for row in reader:
        row["_line"] = reader.line_num
        rows.append({**row, "images": [i for i in (row["images"] or "").split("|") if i]})
    return rows


@products_app.command("import")
def products_import(file: Path) -> None:
    """Import products from CSV (id,name,images with images separated by |) or JSON."""
    from catwalk.db import queries, session_scope

    rows = _read_catalog(file)
    base = file.resolve().parent
    # Every row is checked before anything is written: a bad row 900 leaves no half import.
    products: list[tuple[str, str, list[str]]] = []
    first_seen: dict[str, str] = {}
    problems: list[str] = []
    for n, row in enumerate(rows, start=1):
        where = f"line {row['_line']}" if isinstance(row, dict) and "_line" in row else f"item {n}"
        try:
            if not isinstance(row, dict) or not row.get("id") or not row.get("name"):
                raise InputError("needs an id and a name")
            product_id, name = check_id(row["id"]), clean_name(row["name"])
            images = row.get("images") or []
            if isinstance(images, str):
                images = [i for i in images.split("|") if i]
            if not isinstance(images, list):
                raise InputError("images must be a list of paths or URLs")
            refs = [check_image_ref(_image_ref(check_image_ref(i), base=base)) for i in images]
        except InputError as exc:
            problems.append(f"{where}: {exc.user_message}")
            continue
        if product_id in first_seen:
            problems.append(f"{where}: id {product_id!r} already used at {first_seen[product_id]}")
            continue
        first_seen[product_id] = where
        products.append((product_id, name, refs))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InputError(f"{file}: nothing imported; " + "; ".join(problems[:5]) + more)
    with session_scope() as session:
        for product_id, name, refs in products:
            queries.upsert_product(session=session, product_id=product_id, name=name, images=refs)
    console.print(f"imported {len(products)} product(s) from {escape(str(file))}", highlight=False)


def _follow(job_id: str, *, label: str) -> VideoJob:
    """Show a job's progress until it ends; returns the final job."""
    from catwalk.db import queries, session_scope

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
                if job.status.is_final or job.status is JobStatus.AWAITING_APPROVAL:
                    return job
            time.sleep(0.5)


@app.command()
def generate(
    product_id: Annotated[
        str | None, typer.Argument(help="The product (or use a bulk option).")
    ] = None,
    model_type: Annotated[str, typer.Option("--model-type", help="female or male")] = "female",
    style: Annotated[str, typer.Option("--style", help="smooth or dynamic")] = "smooth",
    review: Annotated[
        str | None,
        typer.Option(
            "--review", help="none, keyframes, publish or both (default: the REVIEW setting)"
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end.")] = False,
    all_missing: Annotated[
        bool, typer.Option("--all-missing", help="Every product without a (recent) video.")
    ] = False,
    ids: Annotated[str | None, typer.Option("--ids", help="Product ids, comma separated.")] = None,
    from_csv: Annotated[
        Path | None, typer.Option("--from-csv", help="CSV of product ids (an id column).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start a video job for a product (or many, within the daily limit); prints job ids at once."""
    from catwalk.submission import submit_job

    options = {"modelType": model_type, "videoStyle": style}
    if review is not None:
        options["review"] = review
    bulk = all_missing or ids is not None or from_csv is not None
    if bulk or product_id is None:
        from catwalk.cli.jobs_cmd import generate_many, products_for_bulk

        if not bulk:
            raise InputError("name a product, or use --all-missing, --ids a,b,c or --from-csv FILE")
        if product_id is not None or wait:
            raise InputError("a bulk generate takes no product argument and no --wait")
        chosen = products_for_bulk(all_missing=all_missing, ids=ids, from_csv=from_csv)
        if not chosen:
            print(json.dumps({"started": {}}) if as_json else "no product to generate")
            return
        generate_many(chosen, options, as_json=as_json)
        return
    try:
        submission = submit_job(product_id, options)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    note = "" if submission.created else " (already in flight)"
    if as_json and not wait:
        print(json.dumps({"jobId": submission.job_id, "created": submission.created}))
        return
    console.print(f"job [bold]{escape(submission.job_id)}[/]{note}")
    if not wait:
        return
    job = _follow(submission.job_id, label=escape(product_id))
    if job.status is JobStatus.AWAITING_APPROVAL:
        console.print(
            f"[yellow]AWAITING_APPROVAL[/] {escape(job.current_step)}: "
            f"catwalk review {escape(job.id[:8])}"
        )
        return
    if job.status is JobStatus.COMPLETED:
        video_url, _ = _urls(job)
        console.print(f"[green]COMPLETED[/] video: {_display_url(video_url)}")
        return
    err.print(f"[red]{job.status.value}[/]: {escape(job.error_message or '')}")
    explained = explain(job.status, job.failure_kind, job.error_message)
    if explained is not None:
        err.print(f"{escape(explained.reason)} {escape(explained.next_action)}")
        err.print(escape(_commands_for(job.id, explained.actions, job.product_id)))
    raise typer.Exit(1)


def _commands_for(job_id: str, actions: tuple[Action, ...], product_id: str) -> str:
    commands = {
        Action.RETRY: f"catwalk retry {job_id[:8]}",
        Action.NEW_KEYFRAMES: f"catwalk retry {job_id[:8]} --new-keyframes",
        Action.START_OVER: f"catwalk generate {product_id}",
    }
    return "next: " + " | ".join(commands[a] for a in actions)


@app.command()
def status(job_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one job (by id or a unique prefix of 6+ characters), as the HTTP API does."""
    from catwalk.cli.jobs_cmd import resolve_job_id
    from catwalk.db import queries, session_scope

    with session_scope() as session:
        job = queries.get_job(session=session, job_id=resolve_job_id(session, job_id))
        assert job is not None
        payload = _contract(job)
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    tables.show_record(console, list(_status_fields(payload)))


def _status_fields(payload: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str, Kind]]:
    """The contract's fields one per line: nested objects as ``result.videoUrl``."""
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _status_fields(value, prefix=f"{name}.")
        elif isinstance(value, list):
            yield name, json.dumps(value), "text"
        elif isinstance(value, str) and key.endswith(("Id", "Url")):
            yield name, _display_url(value), "key"
        else:
            yield name, "-" if value is None else str(value), "text"


@app.command()
def jobs(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="How many of the newest jobs.")
    ] = 50,
) -> None:
    """List the newest jobs."""
    from catwalk.db import queries, session_scope

    with session_scope() as session:
        payload = [_contract(job) for job in queries.list_jobs(session=session, limit=limit)]
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    if not payload:
        console.print("No jobs yet. Start one with [bold]catwalk generate PRODUCT[/].")
        return
    cells = [
        (
            # 12 characters: a prefix every command takes (6+), far from any clash.
            row["jobId"][:12],
            row["status"],
            f"{row['progress']}%",
            f"${row['cost']['total']:.4f}",
            row["productId"],
            row["currentStep"],
            row.get("error") or "",
        )
        for row in payload
    ]
    tables.show(
        console,
        [
            Column("job", "key", headline=True),
            Column("status"),
            Column("progress", justify="right"),
            Column("cost", justify="right"),
            Column("product", "key"),
            Column("step", "text"),
            Column("error", "text"),
        ],
        cells,
    )


@app.command("run-job", hidden=True)
def run_job(job_id: str) -> None:
    """Run a recorded job's flow in this process (what the local launcher starts)."""
    from catwalk.db import queries, session_scope
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
    from catwalk.db import jobs, session_scope
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
from catwalk.cli.jobs_cmd import cancel as _cancel
from catwalk.cli.jobs_cmd import retry as _retry

app.command("retry")(_retry)
app.command("cancel")(_cancel)
from catwalk.cli.alerts_cmd import alerts_app as _alerts_app
from catwalk.cli.stats_cmd import stats as _stats

app.command("stats")(_stats)
app.add_typer(_alerts_app, name="alerts")
app.command()(worker)
from catwalk.cli.dashboard_cmd import register as _register_dashboard
from catwalk.cli.review_cmd import register as _register_review

_register_dashboard(app)
_register_review(app)
