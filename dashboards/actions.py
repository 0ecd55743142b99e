"""Button callbacks shared by several pages."""

from __future__ import annotations

import streamlit as st
from catwalk.dashboards import data, ui

from catwalk import submission
from catwalk.domain import JobStatus
from catwalk.errors import CatwalkError


def cancel_button(job: data.JobRow, *, key: str, label: str) -> None:
    """Cancel behind a confirmation: one stray click must not throw away a paid render."""
    with st.popover(label, icon=":material/block:", disabled=job.cancel_requested):
        spent = ui.money(job.total_cost, places=3)
        st.markdown(f"Stop this job? What it spent so far ({spent}) is not refunded.")
        st.button(
            "Yes, cancel it",
            key=key,
            type="primary",
            disabled=job.cancel_requested,
            on_click=cancel,
            args=(job.id,),
        )


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
