"""Data quality: exclusion reasons, unreadable files, scoring failures and QA flags per site."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from dashboard.common import SYNTHETIC_NOTE, context, require, show_figure, show_table

ctx = context()
st.title("Data quality")
st.caption(SYNTHETIC_NOTE)
require(ctx, "series")
f = ctx.filters
dq = ctx.q("data_quality", f)

sections = (
    ("exclusions", "Series not selected for scoring, by reason", "reason_code", "series",
     "Every indexed series is selected (one per study)."),
    ("unreadable", "Unreadable files, by reason", "reason_code", "files",
     "Every file was readable."),
    ("failures", "Scoring failures of the chosen model, by stage and reason", "reason_code",
     "series", "No scan failed to score (or nothing was scored yet: `vfrisk score --db DB`)."),
    ("qa_flags", "QA flags of scored series", "flag", "series",
     "No QA flag was raised (or nothing was scored yet: `vfrisk score --db DB`)."),
)  # fmt: skip
for name, title, x, y, none in sections:
    st.subheader(title)
    frame = dq[name]
    if frame.empty:
        st.success(none)
        continue
    colour = "site" if "site" in frame.columns else None
    fig = px.bar(frame, x=x, y=y, color=colour, barmode="group",
                 title=f"{title}<br><sup>{ctx.label(int(frame[y].sum()))}</sup>")  # fmt: skip
    show_figure(fig, f"dq_{name}")
    show_table(frame, f"dq_{name}_table")

st.subheader("HU calibration: the spinal canal's reading per scanner")
hu_ref = dq["hu_reference"]
if hu_ref.empty:
    st.info("No biomarkers yet: `vfrisk score --db DB` measures them.")
else:
    st.caption(
        "The spinal canal (fluid and cord) reads the same in every patient, so a scanner "
        "whose canal reads several HU off the cohort's median reads bone and muscle off by "
        "as much (an absolute threshold such as L1 <= 110 HU moves with it). The model "
        "corrects its intensity features by the canal against its development site; the "
        "stored biomarkers are as read."
    )
    fig = px.bar(hu_ref, x="scanner", y="offset_hu", color="site",
                 labels={"offset_hu": "canal HU - cohort median (HU)"},
                 title="Canal reading against the cohort, per scanner")  # fmt: skip
    show_figure(fig, "dq_hu_reference")
    show_table(hu_ref, "dq_hu_reference_table")

st.subheader("Runs that wrote this database")
show_table(ctx.q("recent_runs", 50), "runs")
st.subheader("Audit: worklist exports and identifier displays")
audit = ctx.q("read_audit", 100)
if audit.empty:
    st.info("Nothing exported yet.")
else:
    show_table(audit, "audit")
