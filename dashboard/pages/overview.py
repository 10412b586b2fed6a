"""Overview: cohort funnel per site, demographics, risk and biomarker distributions."""

from __future__ import annotations

import re

import streamlit as st

from dashboard import figures
from dashboard.common import SYNTHETIC_NOTE, context, missing, require, show_figure, show_table
from models.card import render_markdown

ctx = context()
st.title("Overview")
st.caption(SYNTHETIC_NOTE)
require(ctx, "series")
f = ctx.filters

if f.model_id is not None:
    card = ctx.q("model_card", f.model_id)
    with st.expander(f"Model {f.model_id}: how it was trained and validated (model card)"):
        if card is None:
            st.info(
                "No model card was stored with this model: none lay beside its checkpoint "
                "(NAME.card.json, written by `vfrisk train`) when it scored."
            )
        else:
            try:
                text = render_markdown(card)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                st.warning(
                    f"The model card stored with this model cannot be shown ({type(exc).__name__}: "
                    f"{exc}); it was probably written by another vfrisk version. Its JSON is "
                    "in the `models` table (`card` column)."
                )
            else:  # the card's headings two levels down: it sits inside the page
                st.markdown(re.sub(r"^(#+) ", r"##\1 ", text, flags=re.M))

st.subheader("Cohort funnel")
funnel = ctx.q("funnel", f)
n_series = int(funnel["series"].sum())
show_figure(figures.funnel_figure(funnel, ctx.label(n_series)), "funnel")
show_table(funnel, "funnel_table")
st.caption(
    "Files: DICOM instances and unreadable files; series: every series indexed; eligible: "
    "passes the eligibility rules; selected: the one series per study chosen for scoring; "
    "scored / failed: by the chosen model; linked: index scans linked to a clinical row. "
    "Site and scan-date filters apply here; sex and age apply to patients below."
)

st.subheader("Demographics")
if not missing(ctx, "clinical"):
    demo = ctx.q("demographics", f)
    show_table(demo, "demographics")
    total = int(demo.loc[demo["site"] == "all", "patients"].sum())
    st.caption(f"{total:,} patients after the filters (row 'all': every site together).")

st.subheader("Distributions")
choices: dict[str, tuple[str, float, str, bool]] = {}
if ctx.counts.get("predictions", 0) > 0 and ctx.counts.get("clinical", 0) > 0:
    choices |= {
        "Risk of fracture": ("risk", 0.02, "predicted risk", True),
        "Detection probability": ("p_fracture", 0.02, "probability", False),
    }
if ctx.counts.get("biomarkers", 0) > 0 and ctx.counts.get("clinical", 0) > 0:
    choices |= {
        "L1 trabecular HU": ("l1_hu", 10.0, "HU", False),
        "L3 muscle area": ("muscle_area", 5.0, "cm2 (psoas + paraspinal)", False),
        "L3 muscle density": ("muscle_hu", 5.0, "HU (psoas + paraspinal)", False),
    }
if not choices:
    missing(ctx, "predictions")
    st.stop()
c1, c2 = st.columns([3, 2])
shown = c1.segmented_control("Show", list(choices), default=next(iter(choices)), key="ov_dist")
name, width, axis, by_horizon = choices[shown or next(iter(choices))]
horizon = None
if by_horizon:
    horizon = c2.radio(
        "Horizon (years)", [1, 2, 3, 4, 5], index=4, horizontal=True, key="ov_horizon"
    )
    name = f"risk_{horizon}y"
hist = ctx.q("histograms", f, ((name, width),))
if hist.empty:
    st.info("No patient with this value matches the filters.")
else:
    title = f"{shown}" + (f" by {horizon} years" if horizon else "") + " per site"
    sub = ctx.label(int(hist["n"].sum()), horizon)
    show_figure(figures.histogram_figure(hist, width, title, axis, sub), "distribution")
