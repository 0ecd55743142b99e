"""Button callbacks shared by several pages."""

from __future__ import annotations

from catwalk.dashboards import data, ui

from catwalk import submission
from catwalk.domain import JobStatus
from catwalk.errors import CatwalkError


def cancel(job_id: str) -> None:
    try:
        status = submission.cancel_job(job_id, settings=data.settings())
    except CatwalkError as exc:
        ui.flash("error", exc.user_message)
    else:
        note = (
            "cancelled"
            if status is JobStatus.CANCELLED
            else "asked to stop; it stops at its next checkpoint"
        )
        ui.flash("info", f"Job {ui.short_id(job_id)} {note}.")
    data.clear()
