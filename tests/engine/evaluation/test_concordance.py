from __future__ import annotations

import numpy as np
import pytest
from lifelines.utils import concordance_index
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw

from engine.errors import VfriskError
from engine.evaluation import compare_concordance, harrell_c, uno_c
from engine.evaluation._pairs import concordance_counts

TOL = 1e-6  # same definition; differences are floating-point only


def test_harrell_against_sksurv_and_lifelines(real_data, make_target):
    name, t, e, s = real_data
    ours = harrell_c(make_target(t, e), s, ci="none")
    # sksurv.metrics.concordance_index_censored(event, time, risk)
    ref = concordance_index_censored(e, t, s)
    assert ours.estimate == pytest.approx(ref[0], abs=TOL), name
    assert (ours.concordant, ours.discordant, ours.tied_risk) == (ref[1], ref[2], ref[3])
    # lifelines.utils.concordance_index(time, -risk, event): higher score = longer survival
    assert ours.estimate == pytest.approx(concordance_index(t, -s, e), abs=TOL), name


def test_uno_against_sksurv(real_data, make_target):
    name, t, e, s = real_data
    tg = make_target(t, e)
    y = tg.to_sksurv()
    tau = float(np.quantile(t[e], 0.8))
    for kw in ({}, {"tau": tau}):
        try:
            # sksurv.metrics.concordance_index_ipcw(y, y, risk, tau=tau)
            ref = concordance_index_ipcw(y, y, s, **kw)[0]
        except ValueError:  # G reaches 0 before the last event: both refuse
            with pytest.raises(VfriskError, match="tau"):
                uno_c(tg, s, ci="none", **kw)
            continue
        assert uno_c(tg, s, ci="none", **kw).estimate == pytest.approx(ref, abs=TOL), name


def test_pair_counts_against_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(2, 40))
        t = rng.integers(0, 6, n).astype(float)
        e = rng.random(n) < 0.5
        s = rng.integers(0, 5, n).astype(float)
        rw, pw = rng.random(n), rng.integers(0, 3, n).astype(float)
        pc = concordance_counts(t, e, s, rw, pw)
        exp = np.zeros((3, n))
        for i in np.flatnonzero(e):
            for j in range(n):
                if j != i and (t[j] > t[i] or (t[j] == t[i] and not e[j])):
                    k = 0 if s[i] > s[j] else (1 if s[i] == s[j] else 2)
                    exp[k, [i, j]] += rw[i] * pw[i] * pw[j]
        np.testing.assert_allclose(np.vstack(pc[:3]), exp, atol=1e-9)


def test_reversed_score_gives_one_minus_c(simulate_competing):
    tg, x = simulate_competing(2000, seed=1)
    c = harrell_c(tg, x, ci="none").estimate
    assert harrell_c(tg, -x, ci="none").estimate == pytest.approx(1 - c, abs=1e-12)
    u = uno_c(tg, x, tau=5.0, ci="none").estimate
    assert uno_c(tg, -x, tau=5.0, ci="none").estimate == pytest.approx(1 - u, abs=1e-12)


def test_influence_and_bootstrap_intervals_agree(simulate_competing):
    tg, x = simulate_competing(1500, seed=2)
    boot = harrell_c(tg, x, ci="bootstrap", seed=0)
    infl = harrell_c(tg, x, ci="influence")
    assert boot.method == "bootstrap" and infl.method == "influence"
    assert infl.se == pytest.approx(boot.se, rel=0.15)
    assert boot.ci_low < boot.estimate < boot.ci_high


def test_paired_comparison_identical_scores_and_signal(simulate_competing):
    tg, x = simulate_competing(1500, seed=4)
    noise = np.random.default_rng(5).standard_normal(x.size)
    same = compare_concordance(tg, x, x)
    assert same.difference == 0 and same.p_value == 1.0
    for ci in ("bootstrap", "influence"):
        res = compare_concordance(tg, x, x + 2 * noise, ci=ci)
        assert res.difference > 0 and res.p_value < 0.01 and res.ci_low > 0
    b = compare_concordance(tg, x, x + noise, ci="bootstrap")
    i = compare_concordance(tg, x, x + noise, ci="influence")
    assert i.se == pytest.approx(b.se, rel=0.2)
