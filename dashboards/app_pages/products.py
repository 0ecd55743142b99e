"""Products: find a product, see its photo and current video, and generate videos (one or many)."""

from __future__ import annotations

import logging
import math

import streamlit as st
from catwalk.dashboards import data, ui

from catwalk import submission
from catwalk.errors import CatwalkError, LimitExceeded, ProductImageError

PAGE_SIZE = 12
MODEL_TYPES = {"female": "Female model", "male": "Male model"}
STYLES = {"smooth": "Smooth", "dynamic": "Dynamic"}
REVIEWS = {
    "default": "Review: the default",
    "none": "No review: publish when ready",
    "keyframes": "Review the keyframes before the video is bought",
    "publish": "Review the video before it goes live",
    "both": "Review the keyframes and the video",
}
logger = logging.getLogger(__name__)


def _options(prefix: str) -> dict[str, str]:
    options = {
        "modelType": st.session_state.get(f"{prefix}_model", "female"),
        "videoStyle": st.session_state.get(f"{prefix}_style", "smooth"),
    }
    review = st.session_state.get(f"{prefix}_review", "default")
    if review != "default":
        options["review"] = review
    return options


def _review_choice(key: str) -> None:
    default = data.settings().review
    st.selectbox(
        "Review",
        list(REVIEWS),
        format_func=lambda k: f"Review: the default ({default})" if k == "default" else REVIEWS[k],
        key=key,
    )


def _submit(product_id: str, options: dict[str, str]) -> submission.Submission:
    try:
        return submission.submit_job(product_id, options, settings=data.settings())
    except ValueError as exc:  # a bad option value: the widgets only offer good ones
        raise CatwalkError(str(exc)) from exc


def _generate_one(product_id: str) -> None:
    try:
        result = _submit(product_id, _options(f"opt_{product_id}"))
    except CatwalkError as exc:
        ui.flash("error", f"{product_id}: {exc.user_message}")
    else:
        if result.created:
            ui.flash("success", f"Started job {ui.short_id(result.job_id)} for {product_id}.")
        else:
            short = ui.short_id(result.job_id)
            ui.flash("info", f"{product_id}: a video is already in progress (job {short}).")
    data.clear()


def _generate_selected(product_ids: list[str]) -> None:
    started: list[str] = []
    running: list[str] = []
    failed: list[str] = []
    options = _options("batch")
    for index, product_id in enumerate(product_ids):
        try:
            result = _submit(product_id, options)
        except LimitExceeded as exc:
            left = len(product_ids) - index
            ui.flash("warning", f"{exc.user_message} ({left} product(s) not started)")
            break
        except CatwalkError as exc:
            failed.append(f"{product_id}: {exc.user_message}")
            continue
        (started if result.created else running).append(product_id)
    if started:
        ui.flash("success", f"Started {len(started)} video job(s): {', '.join(started)}.")
    if running:
        ui.flash("info", f"Already in progress: {', '.join(running)}.")
    for line in failed:
        ui.flash("error", line)
    for product_id in product_ids:
        st.session_state[f"sel_{product_id}"] = False
    data.clear()


def _product_card(row: data.ProductRow) -> None:
    with st.container(border=True, key=f"card_{row.id}"):
        head, tick = st.columns([6, 1], vertical_alignment="top")
        # st.text: no Markdown at all (escaping still lets GFM turn a URL in a name into a link).
        head.text(row.name)
        head.caption(ui.md(row.id))
        tick.checkbox("Select", key=f"sel_{row.id}", label_visibility="collapsed")
        photo, video = st.columns(2)
        try:
            image = data.image_source(row.image, row.id)
        except ProductImageError as exc:  # the card still draws, with what is wrong
            photo.warning(
                f"Photo unusable: {ui.md(exc.user_message)}", icon=":material/broken_image:"
            )
        else:
            if image:
                photo.image(image, width="stretch")
            else:
                photo.warning("No photo", icon=":material/hide_image:")
        source = data.media_source(row.video_key)
        if source:
            video.video(source, loop=True, muted=True)
        else:
            with video.container(
                height=150, border=True, horizontal_alignment="center", vertical_alignment="center"
            ):
                st.caption(":material/videocam_off: No video yet")
        status = (
            row.job_status
            if (row.active_job_id or row.job_status == "FAILED")
            else ("COMPLETED" if row.video_key else None)
        )
        # A row that wraps instead of two fixed columns: at 1280 px "Latest job" was cut off.
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            if status is not None:  # a product never generated says so in its video box
                ui.badge(status)
            if row.job_id:
                st.page_link(
                    "app_pages/job_detail.py",
                    label="Latest job",
                    icon=":material/receipt_long:",
                    query_params={"job": row.job_id},
                    width="content",
                )
        if row.active_job_id:
            st.progress(row.job_progress / 100, text=ui.md(row.job_step or "queued"))
        elif row.job_status == "FAILED":
            st.caption(f":red[Last try failed: {ui.md(row.job_error or 'unknown error')}]")
        with st.popover("Generate video", icon=":material/auto_awesome:", width="stretch"):
            st.selectbox(
                "Model",
                list(MODEL_TYPES),
                format_func=MODEL_TYPES.__getitem__,
                key=f"opt_{row.id}_model",
            )
            st.selectbox(
                "Style", list(STYLES), format_func=STYLES.__getitem__, key=f"opt_{row.id}_style"
            )
            _review_choice(f"opt_{row.id}_review")
            st.button(
                "Start",
                key=f"gen_{row.id}",
                type="primary",
                width="stretch",
                on_click=_generate_one,
                args=(row.id,),
            )


st.title("Products")
ui.show_flashes()

search_col, filter_col = st.columns([2, 3], vertical_alignment="bottom")
# Bound to ?q=, so a search is a link: shared, bookmarked, kept through sign-in and reloads.
search = search_col.text_input("Search", placeholder="Name or id", key="q", bind="query-params")
status = (
    filter_col.segmented_control("Show", data.PRODUCT_FILTERS, default="All", key="product_filter")
    or "All"
)

page_number = int(st.session_state.get("product_page", 1))
listing = data.products(search, status, offset=(page_number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
pages = max(1, math.ceil(listing.total / PAGE_SIZE))
if page_number > pages:  # a narrower search or filter: back to its last page
    page_number = st.session_state["product_page"] = pages
    listing = data.products(search, status, offset=(page_number - 1) * PAGE_SIZE, limit=PAGE_SIZE)

selected = [
    key.removeprefix("sel_")
    for key, value in st.session_state.items()
    if isinstance(key, str) and key.startswith("sel_") and value
]
with st.container(border=True):
    count, model, style, action = st.columns([2, 2, 2, 2], vertical_alignment="bottom")
    count.markdown(f"**{len(selected)} selected**  \n:gray[{listing.total} product(s) match]")
    model.selectbox(
        "Model", list(MODEL_TYPES), format_func=MODEL_TYPES.__getitem__, key="batch_model"
    )
    style.selectbox("Style", list(STYLES), format_func=STYLES.__getitem__, key="batch_style")
    action.button(
        f"Generate {len(selected)} video(s)" if selected else "Select products",
        key="generate_selected",
        type="primary",
        icon=":material/auto_awesome:",
        disabled=not selected,
        width="stretch",
        on_click=_generate_selected,
        args=(selected,),
    )

if not listing.rows:
    st.info(
        "No product matches. Clear the search or pick another filter.", icon=":material/search_off:"
    )
columns = st.columns(3)
for index, row in enumerate(listing.rows):
    with columns[index % 3]:
        try:
            _product_card(row)
        except Exception:  # one bad product must not stop the cards after it
            logger.warning("product %r cannot be shown", row.id, exc_info=True)
            st.warning(
                f"Product {ui.md(row.id)} cannot be shown: its photo or video is unreadable.",
                icon=":material/broken_image:",
            )

if pages > 1:
    st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, key="product_page")
