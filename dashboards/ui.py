"""Small presentation helpers the pages share: status badges, durations, money, flash notes."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

import streamlit as st

from catwalk.domain import JobStatus

_BADGES: dict[str, tuple[str, str, str]] = {
    # status: (label, colour, material icon)
    JobStatus.PENDING: ("Waiting", "gray", ":material/schedule:"),
    JobStatus.GENERATING_IMAGES: ("Making keyframes", "blue", ":material/photo_camera:"),
    JobStatus.GENERATING_VIDEO: ("Rendering video", "violet", ":material/movie:"),
    JobStatus.UPLOADING: ("Publishing", "orange", ":material/cloud_upload:"),
    JobStatus.AWAITING_APPROVAL: ("Awaiting approval", "orange", ":material/rate_review:"),
    JobStatus.COMPLETED: ("Completed", "green", ":material/check_circle:"),
    JobStatus.FAILED: ("Failed", "red", ":material/error:"),
    JobStatus.CANCELLED: ("Cancelled", "gray", ":material/block:"),
}

FlashKind = Literal["success", "info", "warning", "error"]


def status_label(status: str) -> str:
    return _BADGES.get(status, (status, "gray", ""))[0]


def badge(status: str) -> None:
    label, colour, icon = _BADGES.get(status, (status, "gray", ":material/help:"))
    st.badge(label, color=colour, icon=icon)  # type: ignore[arg-type]


def longer_than_usual(job: Any) -> str:
    """Why an estimate may rise: the job is past what jobs here usually take."""
    return f"longer than usual (usually {duration(job.typical_seconds)})"


#: How much of a job id the dashboard shows: /job?job= and every CLI command take it back.
SHORT_ID = 8


def short_id(job_id: str) -> str:
    return job_id[:SHORT_ID]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def money(amount: Decimal | float | None, *, places: int = 2) -> str:
    if amount is None:
        return "–"
    return f"${float(amount):,.{places}f}"


# What makes Markdown do something: links and images ([ ] !), HTML and autolinks (< >),
# emphasis and code (* _ ` ~), Streamlit's :color[...] directives ([ ]), maths ($), tables
# (|), headings (#) and the escape itself. Plain punctuation (. , : - ( ) % @) stays as is.
_MARKUP = re.compile(r"([\\`*_\[\]<>!$~|#{}])")
_LIST_START = re.compile(r"^(\d+)([.)])|^([-+])")


def md(value: object) -> str:
    """Data (a name, an id, an error) made inert for Streamlit's Markdown widgets.

    Names and errors are data, never markup: every character Markdown acts on is
    backslash-escaped (CommonMark's escape), so ``![x](http://...)`` shows as those
    characters and makes the browser fetch nothing; line breaks become spaces, and a
    leading list marker is escaped. Where a widget takes plain text, use ``st.text``.
    """
    text = _MARKUP.sub(r"\\\1", " ".join(str(value).split()))
    return _LIST_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", text)


def flash(kind: FlashKind, text: str) -> None:
    """Queue a note for the top of the next run (actions run in callbacks, before the page)."""
    st.session_state.setdefault("flash", []).append((kind, text))


def show_flashes() -> None:
    for kind, text in st.session_state.pop("flash", []):
        # Flash notes quote ids and error messages (data): shown as text, never Markdown.
        getattr(st, kind)(md(text))
