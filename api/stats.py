"""The numbers behind ``GET /api/admin/video-generation/stats``: three small SQL aggregates.

Costs come from the ledger (every provider call, failed attempts included), not from the
jobs' totals, so spend on jobs since deleted still counts. Days are UTC days.
Stand-in until the shared statistics module (``db/stats.py``) lands; the contract fields
and their types are fixed here and by the API's response model.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, case, cast, func, select
from sqlalchemy.orm import Session

from db.models import LedgerEntry, VideoJob
from domain import JobStatus

# The ledger's ``service`` names and the contract's cost buckets.
_SERVICES = {"nano_banana": "nanoBanana", "pika": "pikaLabs"}


def _utc_day(session: Session) -> Any:
    column = LedgerEntry.created_at
    if session.get_bind().dialect.name == "postgresql":
        # timestamptz -> date follows the session's TimeZone; pin it to UTC.
        return cast(func.timezone("UTC", column), Date)
    # SQLite stores the UTC wall time as text: its first ten characters are the day.
    return func.substr(column, 1, 10)


def generation_stats(*, session: Session) -> dict[str, Any]:
    """The original stats contract as plain JSON-ready values."""
    total, completed, failed = session.execute(
        select(
            func.count(VideoJob.id),
            func.coalesce(func.sum(case((VideoJob.status == JobStatus.COMPLETED, 1), else_=0)), 0),
            func.coalesce(func.sum(case((VideoJob.status == JobStatus.FAILED, 1), else_=0)), 0),
        )
    ).one()
    by_service = {
        service: Decimal(amount)
        for service, amount in session.execute(
            select(LedgerEntry.service, func.coalesce(func.sum(LedgerEntry.amount), 0)).group_by(
                LedgerEntry.service
            )
        )
    }
    day = _utc_day(session).label("day")
    by_date = session.execute(
        select(day, func.coalesce(func.sum(LedgerEntry.amount), 0)).group_by(day).order_by(day)
    ).all()
    return {
        "totalJobs": int(total),
        "completedJobs": int(completed),
        "failedJobs": int(failed),
        "totalCost": float(sum(by_service.values(), Decimal(0))),
        "costByService": {
            name: float(by_service.get(service, Decimal(0))) for service, name in _SERVICES.items()
        },
        "costByDate": [
            {"date": _as_date(value), "cost": float(Decimal(amount))} for value, amount in by_date
        ],
    }


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
