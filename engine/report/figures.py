"""Plotly figures of the HTML report (pooled cohort), built from ``engine.evaluation``.

Only the HTML report draws (the dashboard has its own pages); plotly is imported inside
the functions so the CLI starts fast. Each figure is a pure function of the report.

* cumulative incidence of fracture by risk group (quantile groups of the last-horizon
  risk, or of FRAX MOF without a model; Aalen-Johansen with deaths competing);
* calibration at each horizon: deciles (mean predicted vs observed) and smooth curve;
* discrimination: td-AUC by horizon per score with intervals, and the ROC curve of
  detection;
* decision curve at the last horizon: model vs FRAX MOF (rescaled from 10 years by a
  constant hazard, ``1 - (1 - p)^(t/10)``), treat all, treat none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine import evaluation as ev
from engine.errors import VfriskError
from engine.report.run import Report
from engine.report.tables import comparator_score

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "calibration_figure",
    "decision_figure",
    "detection_roc_figure",
    "incidence_figure",
    "report_figures",
    "td_auc_figure",
]

_LABELS = {"model": "Model", "frax_mof": "FRAX MOF", "frax_hip": "FRAX hip", "l1_hu": "L1 HU"}


def _target(report: Report, mask: np.ndarray | None = None) -> ev.SurvivalTarget:
    f = report.cohort.frame if mask is None else report.cohort.frame[mask]
    return ev.SurvivalTarget.from_arrays(f["followup_years"].to_numpy(float), f["event_type"])


def incidence_figure(report: Report) -> go.Figure:
    """Cumulative incidence (or 1 - KM) of fracture by risk group, lowest risk first."""
    import plotly.graph_objects as go

    st, f = report.settings, report.cohort.frame
    if report.cohort.model is not None:
        score, name = f[f"risk_{st.c_horizon}y"].to_numpy(float), f"{st.c_horizon}-year risk"
    else:
        score, name = comparator_score(f, "frax_mof"), "FRAX MOF"
    ok = np.isfinite(score)
    groups = ev.curves_by_risk_group(_target(report, ok), score[ok], groups=st.risk_groups)
    fig = go.Figure()
    for label, curve in zip(groups.labels, groups.curves, strict=True):
        y = curve.cif if hasattr(curve, "cif") else 1 - curve.survival
        fig.add_trace(
            go.Scatter(
                x=np.r_[0, curve.times],
                y=np.r_[0, y],
                mode="lines",
                line_shape="hv",
                name=f"{name} {label}",
            )
        )
    fig.update_layout(
        title=f"Incident VF by {name} group (pooled; log-rank p = {groups.logrank.p_value:.2g})",
        xaxis_title="Years from index scan",
        yaxis_title="Cumulative incidence of fracture",
    )
    return fig


def calibration_figure(report: Report) -> go.Figure:
    """Predicted vs observed risk at each horizon: decile points and smooth curves."""
    import plotly.graph_objects as go

    f, target = report.cohort.frame, _target(report)
    fig = go.Figure()
    top = 0.0
    for h in report.settings.horizons:
        risk = f[f"risk_{h}y"].to_numpy(float)
        table = ev.calibration_table(target, risk, float(h), groups=min(10, target.n))
        fig.add_trace(
            go.Scatter(x=table.predicted, y=table.observed, mode="markers", name=f"{h} y deciles")
        )
        try:
            cal = ev.calibration(target, risk, float(h))
            fig.add_trace(
                go.Scatter(
                    x=cal.curve_predicted, y=cal.curve_observed, mode="lines", name=f"{h} y smooth"
                )
            )
        except VfriskError:
            pass
        top = max(top, float(np.nanmax(table.predicted)), float(np.nanmax(table.observed)))
    fig.add_trace(
        go.Scatter(
            x=[0, top],
            y=[0, top],
            mode="lines",
            name="ideal",
            line={"dash": "dash", "color": "grey"},
        )
    )
    fig.update_layout(
        title="Calibration (pooled)", xaxis_title="Predicted risk", yaxis_title="Observed risk"
    )
    return fig


def td_auc_figure(report: Report) -> go.Figure:
    """td-AUC by horizon per score (pooled), with 95% intervals, from the evaluation table."""
    import plotly.graph_objects as go

    rows = report.evaluation
    rows = rows[
        (rows["site"] == "all") & (rows["subgroup"] == "all") & (rows["metric"] == "td_auc")
    ]
    fig = go.Figure()
    for score, g in rows.groupby("score", sort=False):
        g = g.sort_values("horizon")
        fig.add_trace(
            go.Scatter(
                x=g["horizon"],
                y=g["estimate"],
                mode="lines+markers",
                name=_LABELS.get(score, score),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": g["ci_high"] - g["estimate"],
                    "arrayminus": g["estimate"] - g["ci_low"],
                },
            )
        )
    fig.update_layout(
        title="Time-dependent AUROC (pooled)",
        xaxis_title="Horizon (years)",
        yaxis_title="td-AUC",
        yaxis_range=[0.4, 1.0],
    )
    return fig


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss) != 0), ys.size - 1]  # last of each score value
    tp, fp = np.cumsum(ys)[last], np.cumsum(1 - ys)[last]
    return np.r_[0, fp / max(fp[-1], 1)], np.r_[0, tp / max(tp[-1], 1)]


def detection_roc_figure(report: Report) -> go.Figure:
    """ROC curve of p_fracture (and L1 HU when present) for prevalent VF (pooled)."""
    import plotly.graph_objects as go

    f = report.cohort.frame
    y = f["prevalent_vf"].to_numpy(float)
    fig = go.Figure()
    scores = [("model", f["p_fracture"].to_numpy(float))]
    if report.cohort.has_l1_hu:
        scores.append(("l1_hu", comparator_score(f, "l1_hu")))
    for name, s in scores:
        ok = np.isfinite(y) & np.isfinite(s)
        fpr, tpr = _roc(y[ok].astype(int), s[ok])
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=_LABELS[name]))
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dash", "color": "grey"}
        )
    )
    fig.update_layout(
        title="Detection of prevalent VF: ROC (pooled)",
        xaxis_title="1 - specificity",
        yaxis_title="Sensitivity",
    )
    return fig


def decision_figure(report: Report) -> go.Figure:
    """Net benefit at the last horizon: model, FRAX MOF rescaled, treat all, treat none."""
    import plotly.graph_objects as go

    f, h = report.cohort.frame, report.settings.c_horizon
    frax = f["frax_mof"].to_numpy(float) / 100.0
    ok = np.isfinite(frax)
    comp = 1 - (1 - frax[ok]) ** (h / 10.0)
    curve = ev.net_benefit(
        _target(report, ok),
        f.loc[ok, f"risk_{h}y"].to_numpy(float),
        float(h),
        comparator=comp,
        thresholds=np.linspace(0.01, 0.3, 30),
    )
    fig = go.Figure()
    for name, y in (
        ("Model", curve.model),
        ("FRAX MOF (rescaled)", curve.comparator),
        ("Treat all", curve.treat_all),
        ("Treat none", curve.treat_none),
    ):
        fig.add_trace(go.Scatter(x=curve.thresholds, y=y, mode="lines", name=name))
    fig.update_layout(
        title=f"Decision curve at {h} years (pooled)",
        xaxis_title="Threshold probability",
        yaxis_title="Net benefit",
        yaxis_range=[-0.02, max(0.05, float(np.nanmax(curve.treat_all)) * 1.2)],
    )
    return fig


def report_figures(report: Report) -> list[go.Figure]:
    """The figures that can be drawn for this report (a figure that cannot is left out)."""
    makers = [incidence_figure, td_auc_figure]
    if report.cohort.model is not None:
        makers += [calibration_figure, detection_roc_figure, decision_figure]
    figures = []
    for make in makers:
        try:
            figures.append(make(report))
        except (VfriskError, ValueError, IndexError):
            continue  # e.g. no fracture in a tiny cohort: the tables say what is missing
    return figures
