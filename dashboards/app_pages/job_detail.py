"""Job detail: keyframes, video, the timeline of steps and attempts with their costs, and the
actions an admin takes on a job (retry a failed one, cancel a running one)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from catwalk.dashboards import actions, data, ui

from catwalk import submission
from catwalk.domain import JobStatus
from catwalk.errors import CatwalkError, InputError


def _retry(job_id: str) -> None:
    try:
        submission.retry_job(job_id, settings=data.settings())
    except CatwalkError as exc:
        ui.flash("error", exc.user_message)
    else:
        ui.flash(
            "success", f"Job {ui.short_id(job_id)} restarted; it reuses what it already paid for."
        )
    data.clear()


def _actions(detail: data.JobDetail) -> None:
    job = detail.job
    if job.status == JobStatus.AWAITING_APPROVAL:
        st.page_link(
            "app_pages/review.py",
            label="Waiting for an admin's decision: review it",
            icon=":material/rate_review:",
        )
    if job.is_active:
        st.button(
            "Cancel job",
            key="cancel_job",
            icon=":material/block:",
            disabled=job.cancel_requested,
            on_click=actions.cancel,
            args=(job.id,),
        )
        if job.cancel_requested:
            st.caption(":orange[Cancel requested: the job stops at its next checkpoint.]")
        return
    if JobStatus(job.status) not in submission.RETRYABLE_STATUSES:
        return
    cost = submission.retry_cost(job.id, settings=data.settings())
    reuse = []
    if cost.images_to_make < 2:
        reuse.append(f"{2 - cost.images_to_make} stored keyframe(s)")
    if not cost.video_to_make:
        reuse.append("the video already requested")
    todo = []
    if cost.images_to_make:
        todo.append(f"{cost.images_to_make} keyframe(s)")
    if cost.video_to_make:
        todo.append("the video")
    price = ui.money(cost.amount, places=3) if cost.amount is not None else "unknown"
    with st.container(border=True):
        st.markdown(f"**Retry this job** · extra cost about **{price}**")
        st.caption(
            f"Makes {', '.join(todo) or 'nothing new (publishes again)'}"
            + (f"; reuses {', '.join(reuse)}." if reuse else ".")
            + (f" {cost.note}" if cost.note else "")
        )
        st.button(
            f"Retry for {price}",
            key="retry_job",
            type="primary",
            icon=":material/replay:",
            on_click=_retry,
            args=(job.id,),
        )


def _media(detail: data.JobDetail) -> None:
    start, end, video = st.columns(3)
    for column, pose in ((start, "start"), (end, "end")):
        source = data.media_source(detail.image_keys.get(pose))
        if source:
            column.image(source, caption=f"Keyframe: {pose}", width="stretch")
        else:
            column.container(height=200, border=True).caption(f"Keyframe {pose}: not made yet")
    source = data.media_source(detail.video_key)
    if source:
        video.video(source, loop=True, muted=True)
        length = (
            f" · {detail.video_duration_seconds:.1f} s" if detail.video_duration_seconds else ""
        )
        video.caption(f"Video{length}")
    else:
        video.container(height=200, border=True).caption("Video: not made yet")


def _quality(detail: data.JobDetail) -> None:
    """The keyframe check beside the keyframes: verdict, scores, issues, regenerations."""
    quality = detail.quality
    if not quality:
        return
    verdict = quality["verdict"]
    label = {"pass": ":green[passed]", "fail": ":red[failed]"}.get(verdict or "", "not judged yet")
    with st.container(border=True):
        st.markdown(f"**Keyframe check** {label} · {quality['mode']} · {quality['judge']} judge")
        cols = st.columns(4)
        for column, name, key in (
            (cols[0], "Garment match", "garmentMatch"),
            (cols[1], "Same person", "samePerson"),
        ):
            value = quality.get(key)
            column.metric(name, f"{value:.2f}" if isinstance(value, int | float) else "–")
        cols[2].metric("Regenerations", str(quality["regenerations"]))
        cols[3].metric(
            "Check + remakes",
            ui.money(quality["checkCost"] + quality["regenerationCost"], places=4),
        )
        for issue in quality["issues"]:
            # Plain text: the judge's words are not markdown.
            st.text(f"• {issue}")
        if len(quality["checks"]) > 1:
            st.caption(
                "Verdicts in order: "
                + " → ".join(
                    f"{c['verdict']}"
                    + (f" ({', '.join(c['failedFrames'])})" if c["failedFrames"] else "")
                    for c in quality["checks"]
                )
            )


def _timeline(detail: data.JobDetail) -> None:
    st.subheader("Timeline")
    events = pd.DataFrame(
        {
            "at": [e.at for e in detail.events],
            "step": [e.step for e in detail.events],
            "attempt": [e.attempt for e in detail.events],
            "what": [e.kind for e in detail.events],
            "message": [e.message for e in detail.events],
        }
    )
    st.dataframe(
        events,
        hide_index=True,
        width="stretch",
        column_config={
            "at": st.column_config.DatetimeColumn("At (UTC)", format="HH:mm:ss.SSS"),
            "step": st.column_config.TextColumn("Step"),
            "attempt": st.column_config.NumberColumn("Attempt", width="small"),
            "what": st.column_config.TextColumn("What"),
            "message": st.column_config.TextColumn("Message", width="large"),
        },
    )
    st.subheader(f"Costs · {ui.money(detail.job.total_cost, places=4)}")
    if not detail.charges:
        st.caption("Nothing charged yet.")
        return
    charges = pd.DataFrame(
        {
            "at": [c.at for c in detail.charges],
            "service": [c.service for c in detail.charges],
            "model": [f"{c.provider} · {c.model}" for c in detail.charges],
            "units": [
                f"{c.units.normalize():f} {c.unit.replace('_', ' ')}" for c in detail.charges
            ],
            "amount": [float(c.amount) for c in detail.charges],
            "attempt": [c.attempt for c in detail.charges],
            "ok": [c.succeeded for c in detail.charges],
            "note": [c.note or "" for c in detail.charges],
        }
    )
    st.dataframe(
        charges,
        hide_index=True,
        width="stretch",
        column_config={
            "at": st.column_config.DatetimeColumn("At (UTC)", format="HH:mm:ss"),
            "service": st.column_config.TextColumn("Service"),
            "model": st.column_config.TextColumn("Provider · model"),
            "units": st.column_config.TextColumn("Units"),
            "amount": st.column_config.NumberColumn("Amount", format="$%.4f"),
            "attempt": st.column_config.NumberColumn("Attempt", width="small"),
            "ok": st.column_config.CheckboxColumn("Succeeded"),
            "note": st.column_config.TextColumn("Note", width="large"),
        },
    )


def show(job_id: str) -> None:
    detail = data.job_detail(job_id)
    if detail is None:
        st.error(ui.md(f"No job {job_id!r}."))
        return
    job = detail.job
    st.page_link("app_pages/jobs.py", label="All jobs", icon=":material/arrow_back:")
    st.title(ui.md(job.product_name))
    st.caption(
        ui.md(
            f"Job {ui.short_id(job.id)} · product {job.product_id} · "
            + " · ".join(f"{k}: {v}" for k, v in detail.options.items())
        )
    )
    ui.badge(job.status)
    ui.show_flashes()
    cols = st.columns(4)
    cols[0].metric("Progress", f"{job.progress}%")
    cols[1].metric("Elapsed", ui.duration(job.elapsed_seconds))
    cols[2].metric("Remaining", ui.duration(job.remaining_seconds) if job.is_active else "–")
    cols[3].metric("Cost", ui.money(job.total_cost, places=4))
    if job.is_active:
        st.progress(job.progress / 100, text=ui.md(job.wait_reason or job.step))
    if job.error:
        st.error(ui.md(job.error), icon=":material/error:")
    run_url = data.prefect_run_url(job.flow_run_id)
    if run_url:
        st.link_button("Open the Prefect run", run_url, icon=":material/open_in_new:")
    _actions(detail)
    _media(detail)
    _quality(detail)
    _timeline(detail)


@st.fragment(run_every="2s")
def live(job_id: str) -> None:
    show(job_id)


job_id = st.query_params.get("job")
if not job_id:
    st.title("Job detail")
    recent = data.jobs(limit=50)
    if not recent:
        st.info("No jobs yet.")
    else:
        choice = st.selectbox(
            "Job",
            [r.id for r in recent],
            index=None,
            placeholder="Pick a recent job",
            format_func=lambda i: next(
                f"{r.product_name} · {ui.status_label(r.status)} · {ui.short_id(r.id)}"
                for r in recent
                if r.id == i
            ),
        )
        if choice:
            st.query_params["job"] = choice
            st.rerun()
else:
    try:
        # A link may carry the short id the pages show (or any unique prefix of 6+).
        full_id = data.resolve_job_id(job_id)
    except InputError as exc:
        st.title("Job detail")
        st.error(ui.md(f"{exc.user_message}."), icon=":material/search_off:")
    else:
        detail = data.job_detail(full_id)
        # Only a job still moving needs refreshing; a finished one is drawn once.
        if detail is not None and detail.job.is_active:
            live(full_id)
        else:
            show(full_id)
