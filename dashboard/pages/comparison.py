"""Model vs FRAX: c-index and td-AUROC with CIs and paired p-values per site, ROC curves,
bone-only vs bone+muscle and other models, decision curves."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import figures
from dashboard.common import SYNTHETIC_NOTE, context, missing, require, show_figure, show_table
from dashboard.stats import roc_from_counts
from engine import evaluation as ev
from engine.errors import VfriskError

ctx = context()
st.title("Model vs FRAX")
st.caption(SYNTHETIC_NOTE)
require(ctx, "clinical")
f = ctx.filters
sites = tuple([*f.sites, "all"]) if f.sites else ()
subgroup = f"sex={f.sexes[0]}" if len(f.sexes) == 1 else "all"

st.subheader("Discrimination stored by `vfrisk report`")
if not missing(ctx, "evaluation"):
    model_key = (f.model_id,) if f.model_id else (None,)
    disc = ctx.q(
        "evaluation_rows", model_key, sites, subgroup,
        ("harrell_c", "uno_c", "td_auc", "detection_auc"),
    )  # fmt: skip
    if disc.empty:
        st.info(
            "No discrimination rows for this selection (too few fractures, or no report of "
            "this model yet): run `vfrisk report --db DB`."
        )
    else:
        n = int(disc.loc[disc["metric"] == "harrell_c", "n"].max() or 0) if len(disc) else 0
        show_figure(
            figures.forest_figure(disc, "harrell_c", ctx.label(n) + f" | subgroup {subgroup}"),
            "forest_harrell",
        )
        show_table(disc, "discrimination")
    paired = ctx.q("evaluation_rows", model_key, sites, subgroup, ("delta_%",))
    st.markdown("**Paired comparisons** (model minus comparator, two-sided p)")
    if paired.empty:
        st.info("No paired comparison stored for this selection.")
    else:
        show_table(paired, "paired")
    st.markdown("**Every model** (bone-only, bone+muscle, clinical ... as scored and reported)")
    every = ctx.q("evaluation_rows", (), sites, subgroup, ("harrell_c", "uno_c", "td_auc"))
    every = every[every["score"] == "model"] if len(every) else every
    names = {r.model_id: r.name for r in ctx.options["models"].itertuples()}
    if len(every):
        every = every.assign(model=[names.get(m, m) for m in every["model_id"]])
        show_table(every, "every_model")
    else:
        st.info("No model has been reported yet: `vfrisk score` then `vfrisk report`.")
    if f.age or f.scan_dates or len(f.sexes) > 1:
        st.caption(
            "Stored metrics are per site and subgroup (sex or age band); the age and date "
            "filters apply to the curves below, which are computed for the filtered cohort."
        )

st.subheader("ROC at a horizon")
horizon = st.select_slider("Horizon (years)", options=[1, 2, 3, 4, 5], value=5, key="cmp_h")
scores = ["frax_mof", "frax_hip"]
if ctx.counts.get("predictions", 0) > 0 and f.model_id:
    scores = [f"risk_{horizon}y", *scores]
if ctx.counts.get("biomarkers", 0) > 0:
    scores.append("l1_hu")
counts = ctx.q("roc_counts", f, float(horizon), tuple(scores))
curves = {}
for s in scores:
    g = counts[counts["score"] == s]
    if len(g):
        curves[s] = roc_from_counts(g["bin"], g["cases"], g["controls"])
if curves and any(c.cases > 0 and c.controls > 0 for c in curves.values()):
    n = max(c.cases + c.controls for c in curves.values())
    show_figure(figures.roc_figure(curves, horizon, ctx.label(n, horizon)), "roc")
    st.caption(
        f"Cases: fracture by {horizon} years; controls: followed beyond {horizon} years "
        "without one (unweighted cumulative/dynamic definition; the stored td-AUC above is "
        "IPCW-weighted). L1 HU: lower = higher risk. Scores in steps of 0.0025 "
        "(probabilities), 0.25 points (FRAX %) and 1 HU."
    )
else:
    st.info(f"No cases and controls at {horizon} years for the filtered cohort.")

st.subheader("Decision curve")
if ctx.counts.get("predictions", 0) > 0 and f.model_id:
    h = int(horizon)
    sample, n_all = ctx.q(
        "decision_sample", f, h, ctx.settings.decision_sample, 0
    )  # fmt: skip
    try:
        target = ev.SurvivalTarget.from_arrays(
            sample["followup_years"].to_numpy(float), sample["event_type"].to_numpy()
        )
        frax = sample["frax_mof"].to_numpy(float) / 100.0
        comparator = 1.0 - (1.0 - frax) ** (h / 10.0)  # 10-year FRAX at a constant hazard
        ok = np.isfinite(comparator)
        thr = np.linspace(0.01, 0.5, 50)
        dc = ev.net_benefit(
            target.subset(ok), sample["risk"].to_numpy(float)[ok], float(h),
            comparator=comparator[ok], thresholds=thr,
        )  # fmt: skip
        show_figure(
            figures.decision_figure(
                thr,
                {"model": dc.model, "FRAX MOF (rescaled)": dc.comparator,
                 "treat all": dc.treat_all, "treat none": dc.treat_none},
                h,
                ctx.label(dc.n, h) + (f" | random sample of {len(sample):,} of {n_all:,}"
                                      if len(sample) < n_all else ""),
            ),
            "decision",
        )  # fmt: skip
    except VfriskError as exc:
        st.info(f"Decision curve not estimable for this selection: {exc.message}")
else:
    st.info("The decision curve needs model predictions. Run `vfrisk score --db DB` to add them.")
