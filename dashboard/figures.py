"""Plotly figures of the dashboard: pure functions of aggregated frames and curves.

Every figure's title carries the label the page builds with :func:`label` (sites, n,
horizon and the synthetic-data notice); every figure downloads as PNG from plotly's
modebar (the camera icon, configured in ``dashboard.common.show_figure``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.stats import CountCurve, RocCurve

__all__ = [
    "calibration_figure",
    "decision_figure",
    "forest_figure",
    "funnel_figure",
    "histogram_figure",
    "km_figure",
    "label",
    "risk_curve_figure",
    "roc_figure",
]

FUNNEL_STAGES = ("files", "series", "eligible", "selected", "scored", "failed", "linked")
SYNTHETIC = "synthetic data, not for clinical use"


def label(
    sites: Sequence[str], n: int, horizon: float | None = None, *, synthetic: bool = True
) -> str:
    """The line every figure carries: sites, n, horizon and the synthetic-data notice."""
    where = ", ".join(sites) if sites else "all sites"
    parts = [f"sites: {where}", f"n = {n:,}"]
    if horizon is not None:
        parts.append(f"horizon {horizon:g} y")
    if synthetic:
        parts.append(SYNTHETIC)
    return " | ".join(parts)


def _layout(fig: go.Figure, title: str, subtitle: str, x: str, y: str) -> go.Figure:
    fig.update_layout(
        title={"text": f"{title}<br><sup>{subtitle}</sup>"},
        xaxis_title=x,
        yaxis_title=y,
        legend_title_text="",
        margin={"t": 80},
    )
    return fig


def funnel_figure(funnel: pd.DataFrame, subtitle: str) -> go.Figure:
    """Grouped bars: scans at each stage of the pipeline, one colour per site."""
    fig = go.Figure()
    for _, row in funnel.iterrows():
        fig.add_trace(
            go.Bar(
                name=str(row["site"]),
                x=list(FUNNEL_STAGES),
                y=[int(row[s]) for s in FUNNEL_STAGES],
            )
        )
    fig.update_layout(barmode="group")
    return _layout(fig, "Cohort funnel per site", subtitle, "stage", "count")


def histogram_figure(
    hist: pd.DataFrame, width: float, title: str, x: str, subtitle: str
) -> go.Figure:
    """Overlaid per-site histograms from ``site, bin_start, n`` counts."""
    fig = go.Figure()
    for site, g in hist.groupby("site", sort=True):
        fig.add_trace(
            go.Bar(
                name=f"{site} (n = {int(g['n'].sum()):,})",
                x=g["bin_start"] + width / 2,
                y=g["n"],
                width=width,
                opacity=0.6,
            )
        )
    fig.update_layout(barmode="overlay")
    return _layout(fig, title, subtitle, x, "patients")


def km_figure(
    curves: Mapping[str, CountCurve], title: str, subtitle: str, *, band: bool = True
) -> go.Figure:
    """Cumulative incidence (1 - Kaplan-Meier) per curve with its confidence band."""
    fig = go.Figure()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    for i, (name, c) in enumerate(curves.items()):
        colour = palette[i % len(palette)]
        x = np.r_[0.0, c.times]
        if band:
            fig.add_trace(
                go.Scatter(
                    x=np.r_[x, x[::-1]],
                    y=np.r_[0.0, 1 - c.ci_high, (1 - np.r_[1.0, c.ci_low])[::-1]],
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.15,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    line_shape="hv",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=np.r_[0.0, 1 - c.survival],
                mode="lines",
                line_shape="hv",
                line={"color": colour},
                name=f"{name} (n = {c.n:,}, fractures {c.events:,})",
            )
        )
    return _layout(fig, title, subtitle, "years from index scan", "cumulative incidence of VF")


def calibration_figure(points: pd.DataFrame, horizon: int, subtitle: str) -> go.Figure:
    """Mean predicted vs observed (1 - KM) risk per quantile bin, per site, with CIs.

    ``points``: ``site, bin, n, predicted, observed, lo, hi``.
    """
    fig = go.Figure()
    top = 0.05
    for site, g in points.groupby("site", sort=True):
        fig.add_trace(
            go.Scatter(
                x=g["predicted"],
                y=g["observed"],
                mode="markers+lines",
                name=f"{site} (n = {int(g['n'].sum()):,})",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (g["hi"] - g["observed"]).clip(lower=0),
                    "arrayminus": (g["observed"] - g["lo"]).clip(lower=0),
                },
            )
        )
        top = max(top, float(np.nanmax(g[["predicted", "hi"]].to_numpy())))
    fig.add_trace(
        go.Scatter(
            x=[0, top],
            y=[0, top],
            mode="lines",
            name="ideal",
            line={"dash": "dash", "color": "grey"},
        )
    )
    return _layout(
        fig,
        f"Calibration at {horizon} years",
        subtitle,
        f"mean predicted {horizon}-year risk",
        f"observed {horizon}-year incidence (1 - KM)",
    )


def forest_figure(rows: pd.DataFrame, metric: str, subtitle: str) -> go.Figure:
    """Estimates with intervals of one metric per score and site (``evaluation`` rows)."""
    fig = go.Figure()
    sub = rows[rows["metric"] == metric]
    for score, g in sub.groupby("score", sort=True):
        ylab = [
            f"{s}" + (f" @{h:g}y" if pd.notna(h) else "")
            for s, h in zip(g["site"], g["horizon"], strict=True)
        ]
        fig.add_trace(
            go.Scatter(
                x=g["estimate"],
                y=ylab,
                mode="markers",
                name=str(score),
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": (g["ci_high"] - g["estimate"]).fillna(0),
                    "arrayminus": (g["estimate"] - g["ci_low"]).fillna(0),
                },
            )
        )
    fig.add_vline(x=0.5, line_dash="dot", line_color="grey")
    return _layout(fig, f"{metric} with 95% CI", subtitle, metric, "site")


def roc_figure(curves: Mapping[str, RocCurve], horizon: float, subtitle: str) -> go.Figure:
    """ROC curves at ``horizon`` (cases: fracture by then; controls: followed beyond)."""
    fig = go.Figure()
    for name, c in curves.items():
        fig.add_trace(
            go.Scatter(
                x=c.fpr,
                y=c.tpr,
                mode="lines",
                name=f"{name}: AUC {c.auc:.3f} ({c.cases:,} cases, {c.controls:,} controls)",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dash", "color": "grey"}
        )
    )
    return _layout(fig, f"ROC at {horizon:g} years", subtitle, "1 - specificity", "sensitivity")


def decision_figure(
    thresholds: np.ndarray,
    curves: Mapping[str, np.ndarray],
    horizon: int,
    subtitle: str,
) -> go.Figure:
    """Net benefit by threshold probability (model, comparator, treat all, treat none)."""
    fig = go.Figure()
    for name, nb in curves.items():
        if np.isfinite(nb).any():
            fig.add_trace(go.Scatter(x=thresholds, y=nb, mode="lines", name=name))
    finite = np.concatenate([v[np.isfinite(v)] for v in curves.values()] + [np.zeros(1)])
    fig.update_yaxes(range=[min(-0.01, float(finite.min())), float(finite.max()) * 1.1 + 1e-3])
    return _layout(
        fig,
        f"Decision curve at {horizon} years",
        subtitle,
        "threshold probability",
        "net benefit",
    )


def risk_curve_figure(risks: Sequence[float], subtitle: str) -> go.Figure:
    """One patient's predicted cumulative risk of fracture at 1..5 years."""
    years = list(range(1, len(risks) + 1))
    fig = go.Figure(go.Scatter(x=years, y=list(risks), mode="lines+markers", name="risk"))
    fig.update_yaxes(range=[0, max(0.05, float(np.nanmax(risks)) * 1.2)])
    return _layout(fig, "Predicted risk of vertebral fracture", subtitle, "years", "probability")
