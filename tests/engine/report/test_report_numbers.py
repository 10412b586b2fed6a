"""The numbers of `vfrisk report`: equal to direct engine.evaluation calls, in range."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from engine import evaluation as ev
from engine.report import evaluate
from engine.report.document import build_document
from engine.report.render import evaluation_csv_frame, to_markdown

TOL = 1e-9  # same calls on the same arrays: equal up to float summation order


def _row(report, score, metric, site="all", subgroup="all", horizon=None):  # noqa: ANN001, ANN202
    e = report.evaluation
    m = (e["score"] == score) & (e["metric"] == metric) & (e["site"] == site)
    m &= e["subgroup"] == subgroup
    m &= e["horizon"].isna() if horizon is None else e["horizon"] == horizon
    hit = e[m]
    assert len(hit) == 1, (score, metric, site, subgroup, horizon)
    return hit.iloc[0]


def _close(row, est, lo=np.nan, hi=np.nan) -> None:  # noqa: ANN001
    assert row["estimate"] == pytest.approx(est, abs=TOL)
    for got, want in ((row["ci_low"], lo), (row["ci_high"], hi)):
        if np.isfinite(want):
            assert got == pytest.approx(want, abs=TOL)


@pytest.mark.parametrize("site", ["all", "ext_a"])
def test_report_against_evaluation(scored_report, site: str) -> None:
    # Reference: each number recomputed by a direct engine.evaluation call on the arrays
    # of the same patients (the analysis frame), same interval settings.
    rep, st = scored_report, scored_report.settings
    f = rep.cohort.frame if site == "all" else rep.cohort.frame.query("site == @site")
    target = ev.SurvivalTarget.from_arrays(f["followup_years"], f["event_type"])
    kw = st.ci_kwargs()
    risk5 = f["risk_5y"].to_numpy()
    assert _row(rep, "cohort", "patients", site)["estimate"] == len(f)
    assert _row(rep, "cohort", "events", site)["estimate"] == (f["event_type"] == 1).sum()
    assert _row(rep, "cohort", "deaths", site)["estimate"] == (f["event_type"] == 2).sum()
    a = ev.auroc(f["prevalent_vf"].astype(int), f["p_fracture"])
    _close(_row(rep, "model", "detection_auc", site), a.estimate, a.ci_low, a.ci_high)
    h = ev.harrell_c(target, risk5, **kw)
    _close(_row(rep, "model", "harrell_c", site), h.estimate, h.ci_low, h.ci_high)
    u = ev.uno_c(target, risk5, tau=5.0, **kw)
    _close(_row(rep, "model", "uno_c", site, horizon=5.0), u.estimate, u.ci_low, u.ci_high)
    risks = f[["risk_2y", "risk_3y", "risk_5y"]].to_numpy()
    td = ev.cumulative_dynamic_auc(target, risks, [2, 3, 5], **kw)
    b = ev.brier_score(target, risks, [2, 3, 5], alpha=st.alpha)
    for j, hz in enumerate((2.0, 3.0, 5.0)):
        r = _row(rep, "model", "td_auc", site, horizon=hz)
        _close(r, td.estimate[j], td.ci_low[j], td.ci_high[j])
        assert r["events"] == td.cases[j]
        _close(
            _row(rep, "model", "brier", site, horizon=hz), b.estimate[j], b.ci_low[j], b.ci_high[j]
        )
        c = ev.calibration(target, risks[:, j], hz, alpha=st.alpha)
        _close(
            _row(rep, "model", "cal_slope", site, horizon=hz),
            c.slope,
            c.slope_ci_low,
            c.slope_ci_high,
        )
        _close(_row(rep, "model", "cal_intercept", site, horizon=hz), c.intercept)
        _close(_row(rep, "model", "ici", site, horizon=hz), c.ici)
        _close(_row(rep, "model", "e50", site, horizon=hz), c.e50)
    _close(_row(rep, "model", "ibs", site, horizon=5.0), b.integrated)
    frax = f["frax_mof"].to_numpy()
    fc = ev.harrell_c(target, frax, **kw)
    _close(_row(rep, "frax_mof", "harrell_c", site), fc.estimate, fc.ci_low, fc.ci_high)
    d = ev.compare_concordance(target, risk5, frax, kind="harrell", **kw)
    row = _row(rep, "model", "delta_harrell_c_vs_frax_mof", site)
    _close(row, d.difference, d.ci_low, d.ci_high)
    assert row["p_value"] == pytest.approx(d.p_value, abs=TOL)
    du = ev.compare_concordance(target, risk5, f["frax_hip"], kind="uno", tau=5.0, **kw)
    _close(_row(rep, "model", "delta_uno_c_vs_frax_hip", site, horizon=5.0), du.difference)
    # The Markdown shows the same numbers (3 decimals).
    md = to_markdown(build_document(rep))
    assert f"{h.estimate:.3f} ({h.ci_low:.3f} to {h.ci_high:.3f})" in md
    assert f"{d.difference:+.3f} ({d.ci_low:.3f} to {d.ci_high:.3f})" in md


def test_median_followup_against_lifelines(scored_report) -> None:
    # Reference: lifelines.KaplanMeierFitter on the reversed indicator (censored = event).
    f = scored_report.cohort.frame
    km = KaplanMeierFitter().fit(f["followup_years"], event_observed=f["event_type"] == 0)
    got = _row(scored_report, "cohort", "median_followup")["estimate"]
    assert got == pytest.approx(km.median_survival_time_, abs=1e-12)


def test_oracle_c_index_against_lifelines_and_expected_range(scored_report) -> None:
    # Reference: lifelines.utils.concordance_index(T, -risk, fracture) (deaths censored).
    f = scored_report.cohort.frame
    ref = concordance_index(f["followup_years"], -f["risk_5y"], f["event_type"] == 1)
    model = _row(scored_report, "model", "harrell_c")
    assert model["estimate"] == pytest.approx(ref, abs=1e-9)
    # The oracle is the true cumulative incidence: well above chance and above FRAX-like
    # probabilities from clinical factors alone (README, Measured: about 0.75-0.82).
    assert 0.72 < model["estimate"] < 0.88
    frax = _row(scored_report, "frax_mof", "harrell_c")["estimate"]
    assert 0.6 < frax < model["estimate"]
    delta = _row(scored_report, "model", "delta_harrell_c_vs_frax_mof")
    assert delta["estimate"] > 0 and delta["p_value"] < 0.01 and delta["ci_low"] > 0
    for h in (2.0, 3.0, 5.0):
        assert 0.7 < _row(scored_report, "model", "td_auc", horizon=h)["estimate"] < 0.95


def test_per_site_and_subgroup_rows_present(scored_report) -> None:
    e = scored_report.evaluation
    assert set(e["site"]) == {"all", "dev", "ext_a", "ext_b"}
    for site in ("all", "dev", "ext_a", "ext_b"):
        for metric in ("harrell_c", "uno_c", "detection_auc", "cal_slope", "td_auc"):
            assert ((e["site"] == site) & (e["metric"] == metric) & (e["score"] == "model")).any()
    subgroups = set(e.loc[e["site"] == "all", "subgroup"])
    assert {"all", "sex=F", "sex=M", "age=60-69", "age=70-79", "age=80+"} <= subgroups
    key = ["score", "site", "subgroup", "horizon", "metric"]
    assert not e.assign(horizon=e["horizon"].fillna(-1)).duplicated(key).any()
    # counts add up: the sites partition the pooled cohort
    pats = e[(e["metric"] == "patients") & (e["subgroup"] == "all")].set_index("site")["estimate"]
    assert pats["all"] == pats.drop("all").sum() == 3000


def test_small_counts_suppressed_in_every_export(scored_report, tmp_path) -> None:
    k = 150
    rep = dataclasses.replace(
        scored_report, settings=dataclasses.replace(scored_report.settings, min_cell_count=k)
    )
    small = rep.evaluation[(rep.evaluation["n"] > 0) & (rep.evaluation["n"] < k)]
    assert not small.empty  # e.g. the age=50-59 subgroups
    csv = evaluation_csv_frame(rep)
    for col in ("n", "events"):
        values = csv[col].dropna()
        assert not any(isinstance(v, int) and 0 < v < k for v in values)
    assert (csv.loc[small.index, "n"] == f"<{k}").all()
    counts = csv[csv["metric"].isin(["patients", "events", "deaths", "prevalent_vf"])]
    assert not any(isinstance(v, int) and 0 < v < k for v in counts["estimate"])
    md = to_markdown(build_document(rep))
    assert f"| ext_b | age=50-59 | <{k} | <{k} |" in md
    from engine.report import write

    for ext in (".md", ".html", ".json", ".csv"):
        text = write(rep, tmp_path / f"r{ext}").read_text()
        assert f"<{k}" in text or f"&lt;{k}" in text
    j = pd.read_json(tmp_path / "r.json", typ="series")
    assert all(not (isinstance(r["n"], int) and 0 < r["n"] < k) for r in j["evaluation"])
    # default k = 5: a subgroup with 1-4 events shows "<5"
    assert "<5" in to_markdown(build_document(scored_report))


def test_evaluate_is_deterministic_and_skips_tiny_groups(scored_report) -> None:
    f = scored_report.cohort.frame.head(40)
    st = dataclasses.replace(scored_report.settings, subgroups=False)
    one = evaluate(f, st, has_model=True, has_l1_hu=False)
    two = evaluate(f, st, has_model=True, has_l1_hu=False)
    pd.testing.assert_frame_equal(one.rows, two.rows)
    assert set(one.rows["score"]) >= {"cohort"}
    if (f["event_type"] == 1).sum() < 5:
        assert any("survival metrics not computed" in n for n in one.notes)
