"""Reads and writes of ``slot_holders``: the provider slots catwalk holds (tasks/slots.py).

Keyword-only, each function takes its Session. Never imports clients, tasks or flows.
"""

from __future__ import annotations

from collections.abc import Sequence

from catwalk.db.base import utcnow
from catwalk.db.models import SlotHolder
from sqlalchemy import delete, select
from sqlalchemy.orm import Session


def open_holder(
    *,
    session: Session,
    limit_name: str,
    job_id: str | None,
    flow_run_id: str | None,
    hostname: str,
    pid: int,
) -> str:
    row = SlotHolder(
        limit_name=limit_name, job_id=job_id, flow_run_id=flow_run_id, hostname=hostname, pid=pid
    )
    session.add(row)
    session.flush()
    return row.id


def mark_granted(*, session: Session, holder_id: str, lease_id: str) -> None:
    row = session.get(SlotHolder, holder_id)
    if row is not None:
        row.lease_id = lease_id
        row.acquired_at = utcnow()


def close_holder(*, session: Session, holder_id: str, released: bool) -> None:
    """Drop the row once its lease is released; keep it, marked, when the release failed."""
    if released:
        session.execute(delete(SlotHolder).where(SlotHolder.id == holder_id))
        return
    row = session.get(SlotHolder, holder_id)
    if row is not None:
        row.release_pending = True


def list_holders(*, session: Session) -> Sequence[SlotHolder]:
    return session.scalars(select(SlotHolder).order_by(SlotHolder.created_at)).all()


def drop_holder(*, session: Session, holder_id: str) -> None:
    session.execute(delete(SlotHolder).where(SlotHolder.id == holder_id))


def held_counts(*, session: Session) -> dict[str, int]:
    """Granted, unreleased slots per limit name."""
    counts: dict[str, int] = {}
    for row in list_holders(session=session):
        if row.lease_id is not None:
            counts[row.limit_name] = counts.get(row.limit_name, 0) + 1
    return counts
