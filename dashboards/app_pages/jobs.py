"""Jobs: every job's live status, refreshing by itself every 2 seconds (REQ-006)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from catwalk.dashboards import actions, data, ui

from catwalk.domain import ACTIVE_STATUSES, JobStatus

MAX_CARDS = 24  # a big batch would bury the page; the table below lists every job
_COUNTERS = (
    (JobStatus.PENDING, "Waiting"),
    (JobStatus.GENERATING_IMAGES, "Keyframes"),
    (JobStatus.GENERATING_VIDEO, "Rendering"),
    (JobStatus.UPLOADING, "Publishing"),
    (JobStatus.COMPLETED, "Done today"),
    (JobStatus.FAILED, "Failed today"),
)


def _active_job(job: data.JobRow) -> None:
    with st.container(border=True):
        name, bar, timing, links = st.columns([3, 5, 2, 2], vertical_alignment="center")
        name.text(job.product_name)  # plain text: a name is data, never Markdown
        name.caption(ui.md(ui.short_id(job.id)))
        with name:
            ui.badge(job.status)
        bar.progress(job.progress / 100, text=ui.md(f"{job.progress}% · {data.doing(job)}"))
        if job.cancel_requested:
            bar.caption(":orange[Cancel requested]")
        timing.markdown(
            f":material/timer: {ui.duration(job.elapsed_seconds)}  \n"
            f":material/hourglass_bottom: ~{ui.duration(job.remaining_seconds)} left"
            + (f"  \n:orange[{ui.longer_than_usual(job)}]" if job.longer_than_usual else "")
        )
        with links:
            st.page_link(
                "app_pages/job_detail.py",
                label="Details",
                icon=":material/receipt_long:",
                query_params={"job": job.id},
            )
            run_url = data.prefect_run_url(job.flow_run_id)
            if run_url:
                st.link_button("Prefect run", run_url, icon=":material/open_in_new:")
            actions.cancel_button(job, key=f"cancel_{job.id}", label="Cancel")


def _history_frame(rows: tuple[data.JobRow, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "job": [ui.short_id(r.id) for r in rows],
            "product": [r.product_name for r in rows],
            "status": [ui.status_label(r.status) for r in rows],
            "progress": [r.progress for r in rows],
            "step": [r.wait_reason or r.step for r in rows],
            "started": [r.started_at or r.created_at for r in rows],
            "took": [ui.duration(r.elapsed_seconds) for r in rows],
            "cost": [float(r.total_cost) for r in rows],
            "error": [r.error or "" for r in rows],
            "prefect": [data.prefect_run_url(r.flow_run_id) for r in rows],
        }
    )


@st.fragment(run_every="2s")
def live_jobs() -> None:
    counts = data.status_counts()
    for column, (status, label) in zip(st.columns(len(_COUNTERS)), _COUNTERS, strict=True):
        column.metric(label, counts.get(status.value, 0))

    active = data.active_jobs()
    in_flight = sum(counts.get(s.value, 0) for s in ACTIVE_STATUSES)
    st.subheader(f"In progress ({in_flight})")
    if not active:
        st.info("No job in flight. Start one from **Products**.", icon=":material/check:")
    for job in active[:MAX_CARDS]:
        _active_job(job)
    if in_flight > MAX_CARDS:
        st.caption(
            f"The {MAX_CARDS} newest are shown; filter the table below by status to see the others."
        )

    st.subheader("Recent jobs")
    rows = data.jobs(
        tuple(st.session_state.get("job_status_filter", ())), st.session_state.get("job_search", "")
    )
    if not rows:
        st.caption("No job matches.")
        return
    frame = _history_frame(rows)
    if frame["prefect"].isna().all():
        frame = frame.drop(columns="prefect")  # no Prefect UI configured (embedded mode)
    # A fresh key after each use: a selection kept in the session would reopen the job
    # every time the page is shown again.
    generation = st.session_state.get("jobs_table_generation", 0)
    event = st.dataframe(
        frame,
        key=f"jobs_table_{generation}",
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "job": st.column_config.TextColumn("Job", width="small"),
            "product": st.column_config.TextColumn("Product", width="medium"),
            "status": st.column_config.TextColumn("Status"),
            "step": st.column_config.TextColumn("Step"),
            "took": st.column_config.TextColumn("Took"),
            "error": st.column_config.TextColumn("Error", width="large"),
            "progress": st.column_config.ProgressColumn(
                "Progress", min_value=0, max_value=100, format="%d%%"
            ),
            "started": st.column_config.DatetimeColumn("Started", format="D MMM, HH:mm:ss"),
            "cost": st.column_config.NumberColumn("Cost", format="$%.4f"),
            "prefect": st.column_config.LinkColumn("Prefect", display_text="open run"),
        },
    )
    chosen = event.selection.rows if event is not None else []
    if chosen:
        st.session_state["jobs_table_generation"] = generation + 1
        st.switch_page("app_pages/job_detail.py", query_params={"job": rows[chosen[0]].id})
    st.caption("Select a row to open the job.")


st.title("Jobs")
ui.show_flashes()
search, statuses = st.columns([2, 3])
search.text_input("Search", placeholder="Product or job id", key="job_search")
statuses.multiselect(
    "Status", data.JOB_STATUSES, format_func=ui.status_label, key="job_status_filter"
)
live_jobs()
