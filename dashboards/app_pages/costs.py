"""Costs: today's spend against the limits, spend by day, service and model, and alerts."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from catwalk.dashboards import data, ui

PERIODS = {"7 days": 7, "30 days": 30, "90 days": 90}
SERVICE_NAMES = {"nano_banana": "Keyframes", "pika": "Video", "keyframe_check": "Keyframe check"}
SERVICE_COLOURS = alt.Scale(
    domain=list(SERVICE_NAMES.values()), range=["#E599B5", "#C2255C", "#F08C00"]
)


def _by_day_chart(by_day: pd.DataFrame) -> alt.Chart:
    long = by_day.reset_index().melt(id_vars="day", var_name="service", value_name="amount")
    long["service"] = long["service"].map(lambda s: SERVICE_NAMES.get(s, s))
    return (
        alt.Chart(long)
        .mark_bar(cornerRadiusTopLeft=2, cornerRadiusTopRight=2)
        .encode(
            x=alt.X(
                "yearmonthdate(day):T", title=None, axis=alt.Axis(format="%d %b", labelAngle=0)
            ),
            y=alt.Y("sum(amount):Q", title="USD", axis=alt.Axis(format="$,.2f")),
            color=alt.Color(
                "service:N", title=None, scale=SERVICE_COLOURS, legend=alt.Legend(orient="top")
            ),
            tooltip=[
                alt.Tooltip("yearmonthdate(day):T", title="Day"),
                alt.Tooltip("service:N", title="Service"),
                alt.Tooltip("sum(amount):Q", title="Spend", format="$,.4f"),
            ],
        )
        .properties(height=260)
    )


def _by_service_chart(by_model: pd.DataFrame) -> alt.Chart:
    frame = by_model.groupby("service", as_index=False)["amount"].sum()
    frame["service"] = frame["service"].map(lambda s: SERVICE_NAMES.get(s, s))
    return (
        alt.Chart(frame)
        .mark_bar(cornerRadiusEnd=3)
        .encode(
            y=alt.Y("service:N", title=None, sort="-x"),
            x=alt.X("amount:Q", title="USD", axis=alt.Axis(format="$,.2f")),
            color=alt.Color("service:N", scale=SERVICE_COLOURS, legend=None),
            tooltip=[
                alt.Tooltip("service:N"),
                alt.Tooltip("amount:Q", title="Spend", format="$,.4f"),
            ],
        )
        .properties(height=140)
    )


def _acknowledge(alert_id: str) -> None:
    data.acknowledge_alert(alert_id)
    ui.flash("success", "Alert acknowledged.")


st.title("Costs")
ui.show_flashes()
period_label = (
    st.segmented_control("Period", list(PERIODS), default="30 days", key="cost_period") or "30 days"
)
days = PERIODS[period_label]
spend = data.spend(days)

st.caption(f"Days run midnight to midnight in **{spend.timezone}** (LIMITS_TIMEZONE).")
today_spend, generations, per_video, period = st.columns(4)
budget = f" of {ui.money(spend.budget)}" if spend.budget is not None else " (no daily budget)"
today_spend.metric("Spent today", ui.money(spend.spend), help=f"Daily budget{budget}", border=True)
generations.metric(
    "Videos started today",
    f"{spend.generations} / {spend.generation_limit}",
    help="DAILY_GENERATION_LIMIT",
    border=True,
)
per_video.metric(
    "Per delivered video",
    ui.money(spend.cost_per_video, places=3) if spend.cost_per_video is not None else "–",
    help=f"All spend in the last {period_label} (failed attempts too) / videos delivered",
    border=True,
)
period.metric(
    f"Spent, last {period_label}",
    ui.money(spend.period_spend),
    help=f"{spend.period_videos} videos delivered",
    border=True,
)

limit_use = spend.generations / spend.generation_limit if spend.generation_limit else 1.0
st.progress(
    min(1.0, limit_use),
    text=f"Daily generation limit: {spend.generations} of {spend.generation_limit} used",
)
if spend.budget:
    budget_use = float(spend.spend / spend.budget)
    st.progress(
        min(1.0, budget_use),
        text=f"Daily budget: {ui.money(spend.spend)} of {ui.money(spend.budget)} spent",
    )

st.subheader("Spend by day")
by_day = data.cost_by_day(days)
st.altair_chart(_by_day_chart(by_day), width="stretch")
if not by_day.to_numpy().any():
    st.caption("Nothing spent in this period (the offline providers are free).")

by_model = data.cost_breakdown(days)
left, right = st.columns([1, 2])
with left:
    st.subheader("By service")
    if by_model.empty:
        st.caption("Nothing spent in this period.")
    else:
        st.altair_chart(_by_service_chart(by_model), width="stretch")
with right:
    st.subheader("By model")
    st.dataframe(
        by_model,
        hide_index=True,
        width="stretch",
        column_config={
            "service": st.column_config.TextColumn("Service"),
            "provider": st.column_config.TextColumn("Provider"),
            "model": st.column_config.TextColumn("Model", width="medium"),
            "calls": st.column_config.NumberColumn("Calls"),
            "amount": st.column_config.NumberColumn("Spend", format="$%.4f"),
        },
    )

st.subheader("Alerts")
alerts = data.alerts()
if not alerts:
    st.caption("No alerts.")
for alert in alerts:
    with st.container(border=True):
        text, action = st.columns([6, 1], vertical_alignment="center")
        seen = alert.acknowledged_at is not None
        icon = ":material/notifications:" if not seen else ":material/done:"
        text.markdown(
            f"{icon} **{alert.kind.replace('_', ' ')}** · {alert.created_at:%d %b %H:%M} UTC  \n"
            + (f":gray[{ui.md(alert.message)}]" if seen else ui.md(alert.message))
        )
        if alert.delivery_error:
            text.caption(f":orange[Not delivered: {ui.md(alert.delivery_error)}]")
        if not seen:
            action.button(
                "Acknowledge", key=f"ack_{alert.id}", on_click=_acknowledge, args=(alert.id,)
            )
