"""Survival: Kaplan-Meier curves by risk group with bands, numbers at risk, log-rank p."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import figures
from dashboard.common import SYNTHETIC_NOTE, context, require, show_figure, show_table
from dashboard.survival_view import at_risk_table, group_curves, group_logrank

ctx = context()
st.title("Survival by risk group")
st.caption(SYNTHETIC_NOTE)
require(ctx, "clinical")
f = ctx.filters

scores = ["frax_mof", "frax_hip"]
if ctx.counts.get("predictions", 0) > 0 and f.model_id is not None:
    scores = [f"risk_{h}y" for h in (5, 3, 2)] + ["p_fracture", *scores]
c1, c2, c3 = st.columns(3)
score = c1.selectbox("Group patients by", scores, key="sv_score")
groups = c2.number_input("Quantile groups", 2, 6, 3, key="sv_groups")
layout = c3.radio("Sites", ["overlaid", "per site"], horizontal=True, key="sv_layout")
by_site = layout == "per site"

counts, sizes = ctx.q("survival_counts", f, score, int(groups), by_site)
n = int(sizes["n"].sum()) if len(sizes) else 0
if n == 0:
    st.info(f"No patient with {score} matches the filters.")
    st.stop()
curves = group_curves(counts, sizes, score)
tests = group_logrank(counts)
p_text = "; ".join(
    f"{site}: log-rank p = {p:.3g}" if p == p else f"{site}: log-rank not estimable"
    for site, (_, _, p) in tests.items()
)
show_figure(
    figures.km_figure(
        curves,
        f"Incident vertebral fracture by {score} group ({p_text})",
        ctx.label(n),
    ),
    "km",
)
st.caption(
    "1 - Kaplan-Meier with 95% log-log (Greenwood) bands; deaths censored. Groups are "
    "quantiles of the score" + (" within each site." if by_site else " over the filtered cohort.")
)
st.subheader("Numbers at risk")
show_table(at_risk_table(curves, (0, 1, 2, 3, 4, 5)), "at_risk")
st.subheader("Log-rank test")
show_table(
    pd.DataFrame(
        [(s, chi2, df, p) for s, (chi2, df, p) in tests.items()],
        columns=["site", "chi2", "df", "p_value"],
    ),
    "logrank",
)
