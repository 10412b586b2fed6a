"""Figure functions: labels (site, n, horizon, synthetic), traces, PNG-ready plotly figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard import figures
from dashboard.stats import km_from_counts, roc_from_counts


def test_label_names_sites_n_horizon_and_synthetic() -> None:
    text = figures.label(("ext_a",), 1234, 5)
    assert "ext_a" in text and "n = 1,234" in text and "horizon 5 y" in text
    assert "synthetic" in text
    assert "all sites" in figures.label((), 3)


def test_km_figure_draws_a_band_and_a_curve_per_group() -> None:
    curves = {
        "low": km_from_counts([1.0, 2.0, 3.0], [1, 0, 1], [5, 5, 5]),
        "high": km_from_counts([1.0, 2.0], [4, 4], [1, 1]),
    }
    fig = figures.km_figure(curves, "title", figures.label((), 27, 5))
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(fig.data) == 4 and len(lines) == 2
    assert "n = 17" in lines[0].name and "fractures 2" in lines[0].name
    y = np.asarray(lines[1].y)
    assert y[0] == 0 and (np.diff(y) >= 0).all() and y[-1] <= 1
    assert "synthetic" in fig.layout.title.text


def test_histogram_and_funnel_carry_counts() -> None:
    hist = pd.DataFrame({"site": ["a", "a", "b"], "bin_start": [0.0, 0.02, 0.0], "n": [3, 4, 5]})
    fig = figures.histogram_figure(hist, 0.02, "t", "x", "sub")
    assert [t.name for t in fig.data] == ["a (n = 7)", "b (n = 5)"]
    funnel = pd.DataFrame([{"site": "a", **{s: i for i, s in enumerate(figures.FUNNEL_STAGES)}}])
    fig = figures.funnel_figure(funnel, "sub")
    assert list(fig.data[0].y) == list(range(len(figures.FUNNEL_STAGES)))


def test_roc_calibration_forest_decision_and_risk_figures() -> None:
    roc = roc_from_counts([0, 1, 2], [1, 2, 5], [5, 2, 1])
    fig = figures.roc_figure({"model": roc}, 5, "sub")
    assert "AUC" in fig.data[0].name
    pts = pd.DataFrame({"site": ["a", "a"], "bin": [1, 2], "n": [10, 10],
                        "predicted": [0.1, 0.3], "observed": [0.12, 0.25],
                        "lo": [0.05, 0.15], "hi": [0.2, 0.35]})  # fmt: skip
    fig = figures.calibration_figure(pts, 5, "sub")
    assert fig.data[-1].name == "ideal" and fig.data[0].name == "a (n = 20)"
    rows = pd.DataFrame({"metric": ["harrell_c"] * 2, "score": ["model", "frax_mof"],
                         "site": ["all", "all"], "horizon": [np.nan, np.nan],
                         "estimate": [0.7, 0.6], "ci_low": [0.6, 0.5],
                         "ci_high": [0.8, 0.7]})  # fmt: skip
    fig = figures.forest_figure(rows, "harrell_c", "sub")
    assert sorted(t.name for t in fig.data) == ["frax_mof", "model"]
    thr = np.linspace(0.01, 0.5, 5)
    fig = figures.decision_figure(thr, {"model": thr * 0, "none": np.full(5, np.nan)}, 5, "s")
    assert [t.name for t in fig.data] == ["model"]
    fig = figures.risk_curve_figure([0.01, 0.02, 0.03, 0.04, 0.05], "s")
    assert list(fig.data[0].x) == [1, 2, 3, 4, 5]
