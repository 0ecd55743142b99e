"""``catwalk alerts``: list alerts waiting for an admin, acknowledge one, retry deliveries."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from catwalk.cli import tables
from catwalk.cli.tables import Column
from catwalk.config import get_settings
from catwalk.errors import InputError

console = Console()
alerts_app = typer.Typer(
    help="Alerts: spend thresholds and failed jobs.", invoke_without_command=True
)


@alerts_app.callback()
def alerts_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Without a subcommand: the alerts not acknowledged yet, newest first."""
    from catwalk.db import alerts, session_scope

    if ctx.invoked_subcommand is not None:
        return
    with session_scope() as session:
        rows: list[dict[str, Any]] = [
            {
                "id": a.id,
                "kind": a.kind,
                "message": a.message,
                "createdAt": a.created_at.isoformat(),
                "delivered": a.delivered_at is not None,
                "deliveryError": a.delivery_error,
            }
            for a in alerts.unacknowledged_alerts(session=session)
        ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("No alerts waiting.")
        return
    cells = [
        (
            r["id"][:12],
            r["kind"],
            r["createdAt"][:16].replace("T", " "),
            "delivered" if r["delivered"] else "not delivered",
            r["message"],
            "" if r["delivered"] else (r["deliveryError"] or ""),
        )
        for r in rows
    ]
    tables.show(
        console,
        [
            Column("id", "key", headline=True),
            Column("kind"),
            Column("when (UTC)"),
            Column("sent"),
            Column("message", "text"),
            Column("delivery error", "text"),
        ],
        cells,
    )


@alerts_app.command("ack")
def alerts_ack(alert_id: str) -> None:
    """Acknowledge an alert (by id or unique id prefix)."""
    from catwalk.db import alerts, session_scope

    with session_scope() as session:
        matches = [
            a.id
            for a in alerts.unacknowledged_alerts(session=session, limit=1000)
            if a.id.startswith(alert_id)
        ]
        if len(matches) != 1:
            raise InputError(f"no single alert waiting with id {alert_id!r}")
        alerts.acknowledge_alert(session=session, alert_id=matches[0])
    console.print(f"alert {matches[0]} acknowledged")


@alerts_app.command("deliver")
def alerts_deliver() -> None:
    """Send alerts the webhook has not received yet (what housekeeping runs)."""
    from catwalk.alerting import deliver_pending_alerts

    if get_settings().alert_webhook_url is None:
        raise InputError("ALERT_WEBHOOK_URL is not set")
    delivered, failed = deliver_pending_alerts()
    console.print(f"{delivered} alert(s) delivered, {failed} not delivered")
