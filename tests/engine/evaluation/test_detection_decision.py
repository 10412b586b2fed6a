from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from engine.evaluation import (
    SurvivalTarget,
    auroc,
    compare_auroc,
    net_benefit,
    threshold_metrics,
)
from engine.evaluation.curves import aalen_johansen, step_at


def _detection(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.25
    return y, y + rng.standard_normal(n), 0.6 * y + rng.standard_normal(n)


def test_auroc_against_sklearn():
    y, a, _ = _detection(700, 31)
    a = np.round(a, 1)  # ties
    # sklearn.metrics.roc_auc_score(y, score)
    assert auroc(y, a).estimate == pytest.approx(roc_auc_score(y, a), abs=1e-12)


def test_delong_against_bootstrap():
    y, a, b = _detection(800, 32)
    d = compare_auroc(y, a, b, method="delong")
    bt = compare_auroc(y, a, b, method="bootstrap", n_boot=2000, seed=1)
    assert d.difference == bt.difference
    assert d.se == pytest.approx(bt.se, rel=0.12)
    assert d.p_value < 0.05 and bt.p_value < 0.05


def test_delong_variance_against_brute_force():
    y, a, _ = _detection(120, 33)
    pos, neg = a[y], a[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    se = np.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)
    assert auroc(y, a).se == pytest.approx(se, abs=1e-12)


def test_threshold_metrics_against_brute_force():
    y, a, _ = _detection(300, 34)
    res = threshold_metrics(y, a, [0.0, 0.5])
    for k, thr in enumerate([0.0, 0.5]):
        pos = a >= thr
        assert res.sensitivity[k] == pytest.approx((pos & y).sum() / y.sum())
        assert res.specificity[k] == pytest.approx((~pos & ~y).sum() / (~y).sum())
        assert res.ppv[k] == pytest.approx((pos & y).sum() / pos.sum())
        assert res.npv[k] == pytest.approx((~pos & ~y).sum() / (~pos).sum())


def test_net_benefit_against_direct_formula(simulate_competing):
    tg, x = simulate_competing(2000, seed=35)
    risk = 1 / (1 + np.exp(-(x - 1.5)))
    thr = np.array([0.05, 0.2, 0.4])
    res = net_benefit(tg, risk, 3.0, comparator=np.full(tg.n, 0.5), thresholds=thr)
    np.testing.assert_array_equal(res.treat_none, 0.0)
    for k, p in enumerate(thr):
        treated = risk >= p
        cur = aalen_johansen(SurvivalTarget(tg.time[treated], tg.event[treated]))
        obs = step_at(cur.times, cur.cif, 3.0, 0.0)
        exp = obs * treated.mean() - (1 - obs) * treated.mean() * p / (1 - p)
        assert res.model[k] == pytest.approx(exp, abs=1e-12)
    everyone = step_at(*aalen_johansen(tg)[:2], 3.0, 0.0)
    np.testing.assert_allclose(res.treat_all, everyone - (1 - everyone) * thr / (1 - thr))
    np.testing.assert_allclose(res.comparator, res.treat_all)  # 0.5 >= every threshold
