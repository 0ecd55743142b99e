"""``catwalk stats``: spend and jobs for a date range, and today's use against the limits."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich.console import Console

from catwalk.cli import tables
from catwalk.cli.tables import Column
from catwalk.config import get_settings
from catwalk.errors import InputError

console = Console()


def _day(raw: str | None, name: str) -> dt.date | None:
    if raw is None:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise InputError(f"{name} must be a date like 2026-11-26, not {raw!r}") from exc


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def _show(stats: dict[str, Any]) -> None:
    today = stats["today"]
    rng = stats["range"]
    span = f"{rng['from'] or 'start'} to {rng['to'] or 'today'} ({rng['timezone']})"
    rows = [
        (
            "jobs",
            f"{stats['totalJobs']} ({stats['completedJobs']} completed, {stats['failedJobs']} failed)",
        ),
        ("total cost", _money(stats["totalCost"])),
        ("Nano Banana", _money(stats["costByService"]["nanoBanana"])),
        ("Pika", _money(stats["costByService"]["pikaLabs"])),
        ("per delivered video", _money(stats["costPerDeliveredVideo"])),
        (
            "failed attempts",
            f"{_money(stats['failedAttemptSpend'])} ({stats['failedCalls']} calls)",
        ),
        ("failed jobs", _money(stats["failedJobSpend"])),
    ]
    tables.show(
        console,
        [Column("figure", headline=True), Column("value", headline=True)],
        rows,
        title=f"catwalk stats, {span}",
    )
    if stats["spendByModel"]:
        tables.show(
            console,
            [
                Column("model", "key", headline=True),
                Column("service"),
                Column("provider"),
                Column("calls", justify="right"),
                Column("cost", justify="right"),
            ],
            [
                (m["model"], m["service"], m["provider"], str(m["calls"]), _money(m["cost"]))
                for m in stats["spendByModel"]
            ],
            title="spend by model",
        )
    if stats["spendByResolution"]:
        tables.show(
            console,
            [
                Column("service", headline=True),
                Column("resolution"),
                Column("calls", justify="right"),
                Column("cost", justify="right"),
            ],
            [
                (r["service"], r["resolution"], str(r["calls"]), _money(r["cost"]))
                for r in stats["spendByResolution"]
            ],
            title="spend by resolution",
        )
    if stats["costByDate"]:
        tables.show(
            console,
            [Column("date", headline=True), Column("cost", justify="right")],
            [(d["date"], _money(d["cost"])) for d in stats["costByDate"][-31:]],
            title="cost by date",
        )
    budget = f" of {_money(today['budget'])} budget" if today["budget"] is not None else ""
    console.print(
        f"today {today['date']} ({today['timezone']}): {today['generations']} of "
        f"{today['generationLimit']} videos, {_money(today['spend'])} spent, "
        f"{_money(today['reservedCost'])} reserved{budget}; resets at "
        f"{dt.datetime.fromisoformat(today['resetsAt']):%Y-%m-%d %H:%M} {today['timezone']}"
    )


def stats(
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day (YYYY-MM-DD), inclusive.")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="Last day (YYYY-MM-DD), inclusive.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The stats contract as JSON.")] = False,
) -> None:
    """Spend and jobs for a date range (days in LIMITS_TIMEZONE), and today's use vs limits."""
    from catwalk.db import session_scope
    from catwalk.db.stats import compute_stats

    first, last = _day(date_from, "--from"), _day(date_to, "--to")
    if first and last and first > last:
        raise InputError("--from must not be after --to")
    settings = get_settings()
    with session_scope(settings) as session:
        payload = compute_stats(session=session, settings=settings, date_from=first, date_to=last)
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    _show(payload)
