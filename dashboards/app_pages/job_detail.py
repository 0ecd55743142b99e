"""Job detail: keyframes, video, the timeline of steps and attempts with their costs, and the
actions an admin takes on a job: cancel a running one; for a failed one, the reason in plain
words and the actions that can help (retry, new keyframes, start over: catwalk/failures.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from catwalk.dashboards import actions, data, ui

from catwalk import failures, submission
from catwalk.domain import JobStatus
from catwalk.errors import CatwalkError, InputError


def _retry(job_id: str, new_keyframes: bool = False) -> None:
    try:
        submission.retry_job(job_id, settings=data.settings(), new_keyframes=new_keyframes)
    except CatwalkError as exc:
        ui.flash("error", exc.user_message)
    else:
        done = " with new keyframes" if new_keyframes else "; it reuses what it already paid for"
        ui.flash("success", f"Job {ui.short_id(job_id)} restarted{done}.")
    data.clear()


def _start_over(product_id: str, options: dict[str, str]) -> None:
    try:
        started = submission.submit_job(product_id, options, settings=data.settings())
    except CatwalkError as exc:
        ui.flash("error", exc.user_message)
        data.clear()
        return
    data.clear()
    ui.flash("success", f"Started over: new job {ui.short_id(started.job_id)}.")
    st.query_params["job"] = started.job_id  # the page shows the new job


def _price(cost: submission.RetryCost) -> str:
    return ui.money(cost.amount, places=3) if cost.amount is not None else "unknown"


def _failure(detail: data.JobDetail) -> None:
    """Why it failed in plain words, what to do, and the buttons that can help."""
    job = detail.job
    said = job.explanation
    if said is None:
        return
    st.error(f"**{said.reason}** {said.next_action}", icon=":material/error:")
    if said.details:
        with st.expander("Details"):
            st.text(said.details)  # a provider's own words: shown as text, never as markdown
    offered = set(said.actions)
    buttons = [a for a in failures.Action if a in offered]
    # New keyframes and a new job buy the same calls: one quote for both.
    fresh = _price(submission.retry_cost(job.id, settings=data.settings(), new_keyframes=True))
    columns = st.columns(len(buttons))
    for column, action in zip(columns, buttons, strict=True):
        with column.container(border=True):
            if action is failures.Action.RETRY:
                _retry_button(detail)
            elif action is failures.Action.NEW_KEYFRAMES:
                st.markdown(f"**New keyframes** · about **{fresh}**")
                st.caption("Makes both keyframes and the video again; nothing is reused.")
                st.button(
                    f"New keyframes for {fresh}",
                    key="new_keyframes",
                    icon=":material/autorenew:",
                    on_click=_retry,
                    args=(job.id, True),
                )
            else:
                st.markdown(f"**Start over** · about **{fresh}**")
                st.caption("A new job for the product with its current photo and options.")
                st.button(
                    "Start over",
                    key="start_over",
                    icon=":material/restart_alt:",
                    on_click=_start_over,
                    args=(job.product_id, detail.options),
                )


def _actions(detail: data.JobDetail) -> None:
    job = detail.job
    if job.status == JobStatus.AWAITING_APPROVAL:
        st.page_link(
            "app_pages/review.py",
            label="Waiting for an admin's decision: review it",
            icon=":material/rate_review:",
        )
    if job.is_active:
        actions.cancel_button(job, key="cancel_job", label="Cancel job")
        if job.cancel_requested:
            st.caption(":orange[Cancel requested: the job stops at its next checkpoint.]")
        return
    if JobStatus(job.status) not in submission.RETRYABLE_STATUSES:
        return
    _failure(detail)


def _retry_button(detail: data.JobDetail) -> None:
    job = detail.job
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
    price = _price(cost)
    st.markdown(f"**Retry** · extra cost about **{price}**")
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
    offline = [
        what
        for what, provider in (
            ("keyframes", detail.image_provider),
            ("video", detail.video_provider),
        )
        if provider == "offline"
    ]
    if offline:
        # The offline providers draw a pictogram model and a crossfade: a preview of the
        # pipeline, not of what Nano Banana and Pika would make. Say so where people look.
        st.info(
            f"Offline preview: the {' and '.join(offline)} were made on this machine without "
            "the AI providers (set IMAGE_PROVIDER=nano-banana and VIDEO_PROVIDER=pika for real "
            "ones).",
            icon=":material/science:",
        )
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
    cols[2].metric(
        "Remaining",
        ui.duration(job.remaining_seconds) if job.is_active else "–",
        # The estimate only falls until then; past it, it may rise, and says why.
        delta=ui.longer_than_usual(job) if job.longer_than_usual else None,
        delta_color="off",
    )
    cols[3].metric("Cost", ui.money(job.total_cost, places=4))
    if job.is_active:
        st.progress(job.progress / 100, text=ui.md(data.doing(job)))
    if job.error and job.explanation is None:
        # A step failed and is being retried: the raw line is all there is to say yet.
        st.warning(ui.md(job.error), icon=":material/warning:")
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
