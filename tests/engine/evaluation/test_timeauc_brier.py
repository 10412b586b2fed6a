from __future__ import annotations

import numpy as np
import pytest
from sksurv.metrics import brier_score as sk_brier
from sksurv.metrics import cumulative_dynamic_auc as sk_auc
from sksurv.metrics import integrated_brier_score as sk_ibs

from engine.evaluation import brier_score, cumulative_dynamic_auc
from engine.evaluation.ipcw import censoring_survival

TOL = 1e-6


def _horizons(t: np.ndarray, e: np.ndarray) -> np.ndarray:
    return np.quantile(t[e], [0.2, 0.5, 0.8])


def test_td_auc_against_sksurv(real_data, make_target):
    name, t, e, s = real_data
    tg = make_target(t, e)
    h = _horizons(t, e)
    # events after the last horizon recoded as censored: G up to h is unchanged, and
    # scikit-survival then does not refuse data whose G reaches 0 at the end (rossi)
    y = make_target(t, e & (t <= h[-1])).to_sksurv()
    # sksurv.metrics.cumulative_dynamic_auc(y, y, risk, times)
    ref, _ = sk_auc(y, y, s, h)
    np.testing.assert_allclose(cumulative_dynamic_auc(tg, s, h, ci="none").estimate, ref, atol=TOL)


def _risk(s: np.ndarray, h: np.ndarray) -> np.ndarray:
    z = (s - s.mean()) / s.std()
    return 1 - np.exp(-0.3 * h[None, :] * np.exp(0.5 * z[:, None]))


def test_brier_and_ibs_against_sksurv(real_data, make_target):
    name, t, e, s = real_data
    tg = make_target(t, e)
    y = tg.to_sksurv()
    h = np.linspace(*np.quantile(t[e], [0.1, 0.8]), 8)
    f = _risk(s, h)
    # sksurv.metrics.brier_score(y, y, survival, times); integrated_brier_score(...)
    _, ref = sk_brier(y, y, 1 - f, h)
    ours = brier_score(tg, f, h)
    np.testing.assert_allclose(ours.estimate, ref, atol=TOL)
    assert ours.integrated == pytest.approx(sk_ibs(y, y, 1 - f, h), abs=TOL)
    assert (ours.ci_low <= ours.estimate).all() and (ours.estimate <= ours.ci_high).all()


def test_censoring_km_against_sksurv(real_data, make_target):
    from sksurv.nonparametric import CensoringDistributionEstimator

    name, t, e, _ = real_data
    tg = make_target(t, e)
    est = CensoringDistributionEstimator().fit(tg.to_sksurv())
    grid = np.unique(t)[:-1]
    ours = censoring_survival(tg, competing_as_censoring=True).at(grid)
    np.testing.assert_allclose(ours, est.predict_proba(grid), atol=1e-12)


def test_competing_brier_against_brute_force(simulate_competing):
    tg, x = simulate_competing(400, seed=7)
    h = np.array([1.0, 3.0])
    f = _risk(x, h)
    g = censoring_survival(tg, competing_as_censoring=False)
    exp = np.zeros(2)
    for k, hk in enumerate(h):
        for i in range(tg.n):
            ti, ei, fi = tg.time[i], tg.event[i], f[i, k]
            if ti <= hk and ei == 1:
                exp[k] += (1 - fi) ** 2 / g.at(ti)
            elif ti <= hk and ei == 2:
                exp[k] += fi**2 / g.at(ti)
            elif ti > hk:
                exp[k] += fi**2 / g.at(hk)
    np.testing.assert_allclose(brier_score(tg, f, h).estimate, exp / tg.n, atol=1e-12)
