"""Count-based survival and ROC statistics against engine.evaluation and scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dashboard.stats import km_from_counts, logrank_from_counts, roc_from_counts
from engine import evaluation as ev


def _patients(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = rng.integers(1, 5 * 365, n)  # follow-up on a day grid, as the database groups it
    event = rng.choice([0, 1, 2], n, p=[0.6, 0.3, 0.1])
    group = rng.integers(0, 3, n)
    return pd.DataFrame({"day": day, "time": day / 365.25, "event": event, "group": group})


def _counts(p: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return (
        p.assign(events=(p["event"] == 1).astype(int), censored=(p["event"] != 1).astype(int))
        .groupby(by, as_index=False)[["events", "censored"]]
        .sum()
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_km_from_counts_against_engine_kaplan_meier(seed) -> None:
    p = _patients(seed)
    c = _counts(p, ["time"])
    got = km_from_counts(c["time"], c["events"], c["censored"])
    # reference: engine.evaluation.kaplan_meier on the per-patient arrays
    ref = ev.kaplan_meier(ev.SurvivalTarget.from_arrays(p["time"].to_numpy(), p["event"]))
    np.testing.assert_allclose(got.times, ref.times, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.survival, ref.survival, rtol=1e-12)
    np.testing.assert_allclose(got.ci_low, ref.ci_low, rtol=1e-9)
    np.testing.assert_allclose(got.ci_high, ref.ci_high, rtol=1e-9)
    np.testing.assert_allclose(got.at_risk, ref.at_risk)
    assert got.n == len(p) and got.events == int((p["event"] == 1).sum())
    # invariants: in [0, 1], non-increasing
    assert ((got.survival >= 0) & (got.survival <= 1)).all()
    assert (np.diff(got.survival) <= 1e-15).all()
    t = 2.0
    assert got.number_at_risk(t) == int((p["time"] >= t).sum())


@pytest.mark.parametrize("seed", [0, 3])
def test_logrank_from_counts_against_engine_logrank(seed) -> None:
    p = _patients(seed)
    c = _counts(p, ["group", "time"])
    stat, df, pv = logrank_from_counts(c["group"], c["time"], c["events"], c["censored"])
    ref = ev.logrank_test(
        ev.SurvivalTarget.from_arrays(p["time"].to_numpy(), p["event"]), p["group"].to_numpy()
    )
    assert df == ref.df == 2
    assert stat == pytest.approx(ref.statistic, rel=1e-10)
    assert pv == pytest.approx(ref.p_value, rel=1e-8)


def test_logrank_without_two_groups_is_not_estimable() -> None:
    stat, df, pv = logrank_from_counts([1, 1], [1.0, 2.0], [1, 0], [0, 1])
    assert np.isnan(stat) and np.isnan(pv) and df == 0


def test_roc_from_counts_against_sklearn() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    score = rng.integers(0, 40, 500) + 3 * y  # ties within bins
    frame = pd.DataFrame({"bin": score, "case": y, "control": 1 - y})
    c = frame.groupby("bin", as_index=False)[["case", "control"]].sum()
    roc = roc_from_counts(c["bin"], c["case"], c["control"])
    # reference: sklearn.metrics.roc_auc_score(y, score) (ties count half)
    assert roc.auc == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert roc.cases == int(y.sum()) and roc.controls == int((1 - y).sum())
    assert roc.fpr[0] == 0 and roc.tpr[-1] == pytest.approx(1.0)
    assert (np.diff(roc.fpr) >= 0).all() and (np.diff(roc.tpr) >= 0).all()


def test_roc_without_cases_has_no_auc() -> None:
    assert np.isnan(roc_from_counts([0, 1], [0, 0], [3, 4]).auc)
