"""Calibration: predicted vs observed risk per horizon and site; slope, intercept, ICI, Brier."""

from __future__ import annotations

import streamlit as st

from dashboard import figures
from dashboard.common import SYNTHETIC_NOTE, context, missing, require, show_figure, show_table
from dashboard.survival_view import calibration_points

ctx = context()
st.title("Calibration")
st.caption(SYNTHETIC_NOTE)
require(ctx, "clinical", "predictions")
f = ctx.filters
bins = st.slider("Quantile bins per site", 3, 20, 10, key="cal_bins")

horizons = tuple(ctx.settings.horizons)
all_bins, all_counts = ctx.q("calibration_counts", f, horizons, bins)
if all_bins.empty:
    st.info("No scored patient matches the filters.")
for h in horizons if len(all_bins) else ():
    b = all_bins[all_bins["horizon"] == h].drop(columns=["horizon"])
    counts = all_counts[all_counts["horizon"] == h].drop(columns=["horizon"])
    n = int(b["n"].sum())
    points = calibration_points(b, counts, float(h))
    show_figure(figures.calibration_figure(points, h, ctx.label(n, h)), f"cal_{h}")
    show_table(points, f"cal_points_{h}")
st.caption(
    "Observed: 1 - Kaplan-Meier at the horizon within each bin (95% log-log interval), "
    "deaths censored; the bins are quantiles of the predicted risk within each site."
)

st.subheader("Stored calibration metrics (`vfrisk report`)")
if not missing(ctx, "evaluation"):
    sites = [*f.sites, "all"] if f.sites else []
    rows = ctx.q(
        "evaluation_rows", (f.model_id,), tuple(sites), "all",
        ("cal_slope", "cal_intercept", "ici", "brier"),
    )  # fmt: skip
    if rows.empty:
        st.info(
            "The latest report of this model has no calibration rows (too few fractures per "
            "site, or the report predates the model): run `vfrisk report --db DB --model "
            f"{f.model_id}`."
        )
    else:
        show_table(rows, "cal_metrics")
    if f.sexes or f.age or f.scan_dates:
        st.caption(
            "These metrics are those stored for whole sites (and pooled, 'all'); the figures "
            "above follow the sex, age and date filters."
        )
