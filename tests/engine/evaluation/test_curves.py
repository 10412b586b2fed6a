from __future__ import annotations

import numpy as np
import pytest
from lifelines import AalenJohansenFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from engine.evaluation import (
    aalen_johansen,
    curves_by_risk_group,
    kaplan_meier,
    logrank_test,
    numbers_at_risk,
)

TOL = 1e-6


def test_kaplan_meier_against_lifelines(real_data, make_target):
    name, t, e, _ = real_data
    km = kaplan_meier(make_target(t, e))
    # lifelines.KaplanMeierFitter().fit(t, e, timeline=times) (exponential Greenwood CI)
    ref = KaplanMeierFitter().fit(t, e, timeline=km.times)
    np.testing.assert_allclose(km.survival, ref.survival_function_.iloc[:, 0], atol=TOL)
    ci = ref.confidence_interval_.to_numpy()
    np.testing.assert_allclose(km.ci_low, ci[:, 0], atol=TOL)
    np.testing.assert_allclose(km.ci_high, ci[:, 1], atol=TOL)
    assert ((km.survival >= 0) & (km.survival <= 1)).all()
    assert (np.diff(km.survival) <= 0).all()


def test_aalen_johansen_against_lifelines(simulate_competing):
    # lifelines jitters tied times, so the reference uses continuous simulated times
    tg, _ = simulate_competing(600, seed=11)
    aj = aalen_johansen(tg)
    # lifelines.AalenJohansenFitter(calculate_variance=True).fit(t, e, event_of_interest=1)
    ref = AalenJohansenFitter(calculate_variance=True).fit(tg.time, tg.event, event_of_interest=1)
    np.testing.assert_allclose(aj.cif, ref.cumulative_density_.iloc[1:, 0], atol=TOL)
    ci = ref.confidence_interval_.iloc[1:].to_numpy()  # lifelines labels them upper, lower
    ok = np.isfinite(ci).all(axis=1)  # lifelines gives NaN while F = 0; we give 0
    assert (aj.cif[~ok] == 0).all()
    np.testing.assert_allclose(aj.ci_low[ok], ci[ok].min(axis=1), atol=TOL)
    np.testing.assert_allclose(aj.ci_high[ok], ci[ok].max(axis=1), atol=TOL)


def test_aalen_johansen_without_deaths_against_kaplan_meier(real_data, make_target):
    _, t, e, _ = real_data
    tg = make_target(t, e)
    np.testing.assert_allclose(aalen_johansen(tg).cif, 1 - kaplan_meier(tg).survival, atol=1e-12)


def test_cif_and_survival_are_consistent(simulate_competing):
    tg, _ = simulate_competing(3000, seed=12)
    aj = aalen_johansen(tg)
    np.testing.assert_allclose(aj.cif + aj.cif_competing + aj.survival, 1.0, atol=1e-12)
    assert (np.diff(aj.cif) >= 0).all() and (np.diff(aj.survival) <= 0).all()
    # the cause-specific 1 - KM overstates the incidence when deaths compete
    assert (aj.cif <= 1 - kaplan_meier(tg).survival + 1e-12).all()
    assert ((aj.ci_low <= aj.cif) & (aj.cif <= aj.ci_high)).all()


def test_logrank_against_lifelines(real_data, make_target):
    name, t, e, s = real_data
    groups = np.searchsorted(np.quantile(s, [1 / 3, 2 / 3]), s, side="left")
    # lifelines.statistics.multivariate_logrank_test(t, groups, e)
    ref = multivariate_logrank_test(t, groups, e)
    ours = logrank_test(make_target(t, e), groups)
    assert ours.statistic == pytest.approx(ref.test_statistic, rel=1e-6), name
    assert ours.p_value == pytest.approx(ref.p_value, rel=1e-5, abs=1e-300)


def test_curves_by_tertile_and_thresholds(simulate_competing):
    tg, x = simulate_competing(3000, seed=13)
    res = curves_by_risk_group(tg, x, groups=3, times_at_risk=[0, 1, 2])
    assert len(res.curves) == 3 and res.at_risk.shape == (3, 3)
    assert res.at_risk[:, 0].sum() == tg.n
    assert res.logrank.p_value < 1e-6
    final = [c.cif[-1] for c in res.curves]
    assert final == sorted(final)
    q = curves_by_risk_group(tg, x, thresholds=[-1.0, 0.0, 1.0], competing="km")
    assert len(q.curves) == 4 and hasattr(q.curves[0], "survival")
    assert numbers_at_risk(tg, [0.0]).tolist() == [tg.n]
