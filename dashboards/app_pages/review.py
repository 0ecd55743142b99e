"""Review: jobs waiting for a decision, oldest first. At the keyframes, the two frames and the
product photo with the video's quoted cost on the approve button; at publishing, the new
video beside the one live now. Approve, reject with a note, or remake one frame."""

from __future__ import annotations

import datetime as dt

import streamlit as st
from catwalk.dashboards import data, signin, ui

from catwalk import pricing, review
from catwalk.errors import CatwalkError, ConfigError

_SAID = {
    "approve": "approved",
    "reject": "rejected: cancelled, nothing more is spent",
    "regenerate-start": "remaking the start keyframe; it comes back here when it is ready",
    "regenerate-end": "remaking the end keyframe; it comes back here when it is ready",
}


def _decide(job_id: str, decision: str, point: str) -> None:
    note = str(st.session_state.get(f"note_{job_id}", "")).strip()
    who = f"{signin.current_admin() or 'admin'} (dashboard)"
    try:
        review.decide(job_id, decision, by=who, note=note, point=point, settings=data.settings())
    except CatwalkError as exc:
        # Another admin (or the expiry) decided first: say who, change nothing.
        ui.flash("warning", exc.user_message)
    else:
        ui.flash("success", f"Job {ui.short_id(job_id)} {_SAID[decision]}.")
    data.clear()
    # The buttons live in the refreshing fragment: rerun the whole page after a decision, so
    # the note shows at the top and the navigation's count is right.
    st.session_state["review_decided"] = True


def _image_price() -> str:
    try:
        return ui.money(
            pricing.estimate_calls_cost(data.settings(), images=1, video=False), places=3
        )
    except ConfigError:
        return "unknown price"


def _waited(since: dt.datetime, now: dt.datetime) -> str:
    return ui.duration((now - since).total_seconds())


def _media_box(column: st.delta_generator.DeltaGenerator, key: str | None, label: str) -> None:
    source = data.media_source(key)
    if source is None:
        column.container(height=160, border=True).caption(f"{label}: none")
    elif key and key.endswith(".mp4"):
        column.video(source, loop=True, muted=True)
        column.caption(label)
    else:
        column.image(source, caption=label, width="stretch")


def _card(item: review.Waiting, now: dt.datetime) -> None:
    job_id = item.job_id
    with st.container(border=True, key=f"review_{job_id}"):
        title, link = st.columns([4, 1], vertical_alignment="center")
        what = "keyframes" if item.point == "keyframes" else "video, before it goes live"
        title.markdown(
            f"**{ui.md(item.product_name)}** · review the {what}  \n"
            f":gray[job {ui.short_id(job_id)} · waiting {_waited(item.since, now)} · "
            f"cancelled if undecided by {item.expires_at:%b %d %H:%M} UTC · "
            f"spent {ui.money(item.spent, places=3)}]"
        )
        link.page_link(
            "app_pages/job_detail.py",
            label="Job",
            icon=":material/receipt_long:",
            query_params={"job": job_id},
        )
        photo, first, second, controls = st.columns([1, 1, 1, 1.3])
        try:
            picture = data.image_source(item.product_photo, item.product_id)
        except CatwalkError:
            picture = None
        if picture:
            photo.image(picture, caption="Product photo", width="stretch")
        else:
            photo.container(height=160, border=True).caption("Product photo: none")
        if item.point == "keyframes":
            _media_box(first, item.image_keys.get("start"), "Start keyframe")
            _media_box(second, item.image_keys.get("end"), "End keyframe")
            price = _image_price()
            first.button(
                f"Remake ({price})",
                help="Make the start keyframe again (one image), then it asks again",
                key=f"remake_start_{job_id}",
                icon=":material/refresh:",
                width="stretch",
                on_click=_decide,
                args=(job_id, "regenerate-start", item.point),
            )
            second.button(
                f"Remake ({price})",
                help="Make the end keyframe again (one image), then it asks again",
                key=f"remake_end_{job_id}",
                icon=":material/refresh:",
                width="stretch",
                on_click=_decide,
                args=(job_id, "regenerate-end", item.point),
            )
            approve = f"Approve: make the video for {ui.money(item.quote, places=3)}"
        else:
            _media_box(first, item.video_key, "New video")
            _media_box(second, item.live_video_key, "Live now")
            approve = "Approve: make this video live"
        with controls:
            _decision_controls(job_id, item.point, approve)


def _decision_controls(job_id: str, point: str, approve: str) -> None:
    st.text_input(
        "Note (kept on the timeline; a remade frame is told what to change)",
        key=f"note_{job_id}",
        placeholder="e.g. the sleeves are the wrong colour",
    )
    st.button(
        approve,
        key=f"approve_{job_id}",
        type="primary",
        icon=":material/check:",
        width="stretch",
        on_click=_decide,
        args=(job_id, "approve", point),
    )
    st.button(
        "Reject",
        key=f"reject_{job_id}",
        icon=":material/close:",
        width="stretch",
        on_click=_decide,
        args=(job_id, "reject", point),
    )


st.title("Review")
ui.show_flashes()


@st.fragment(run_every=5)
def _queue() -> None:
    from catwalk.db.base import utcnow

    if st.session_state.pop("review_decided", False):
        st.rerun(scope="app")
    # Embedded mode has no worker to expire what waited too long: the page does it.
    review.expire(settings=data.settings())
    queue = review.waiting(settings=data.settings())
    if not queue:
        st.info(
            "Nothing waits for review. Jobs started with a review option (or with REVIEW set) "
            "stop here after their keyframes, or before their video goes live.",
            icon=":material/rate_review:",
        )
        return
    st.caption(f"{len(queue)} job(s) waiting, oldest first")
    now = utcnow()
    for item in queue:
        _card(item, now)


_queue()
