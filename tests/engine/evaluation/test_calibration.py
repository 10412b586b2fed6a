from __future__ import annotations

import numpy as np
import pytest

from engine.errors import VfriskError
from engine.evaluation import SurvivalTarget, calibration, calibration_table, recalibration_fit


def _cohort(n: int, seed: int):
    """Exponential fracture (rate a) and death (rate b) hazards: true CIF known in closed form."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    a = 0.06 * np.exp(0.9 * x)
    b = 0.04
    t_f, t_d = rng.exponential(1 / a), rng.exponential(1 / b, n)
    t_c = rng.uniform(1.0, 8.0, n)
    t = np.minimum(np.minimum(t_f, t_d), t_c)
    e = np.where(t == t_c, 0, np.where(t_f < t_d, 1, 2))

    def cif(h: float) -> np.ndarray:
        return a / (a + b) * (1 - np.exp(-(a + b) * h))

    return SurvivalTarget.from_arrays(t, e), cif


def test_perfect_predictions_are_calibrated():
    tg, cif = _cohort(40_000, seed=21)
    res = calibration(tg, cif(3.0), 3.0)
    assert res.slope == pytest.approx(1.0, abs=0.06)
    assert res.intercept == pytest.approx(0.0, abs=0.06)
    assert res.slope_ci_low < 1.0 < res.slope_ci_high
    assert res.ici < 0.01 and res.e50 < 0.01
    tab = calibration_table(tg, cif(3.0), 3.0)
    assert tab.estimator == "aalen-johansen" and tab.n.sum() == tg.n
    np.testing.assert_allclose(tab.observed, tab.predicted, atol=0.02)
    assert ((tab.ci_low <= tab.observed) & (tab.observed <= tab.ci_high)).all()


def test_miscalibration_is_detected():
    tg, cif = _cohort(40_000, seed=22)
    over = calibration(tg, np.clip(cif(3.0) * 1.8, 0, 1), 3.0)
    assert over.intercept < -0.4 and over.ici > 0.03
    spread = 1 - (1 - cif(3.0)) ** 2.0  # too extreme: slope < 1
    assert calibration(tg, np.clip(spread, 0, 1), 3.0).intercept < 0
    flat = calibration(tg, np.full(tg.n, cif(3.0).mean()) + 1e-9 * np.arange(tg.n), 3.0)
    assert flat.slope > 5  # a non-discriminating score needs a steep recalibration


def test_recalibration_fit_undoes_a_known_distortion():
    tg, cif = _cohort(40_000, seed=24)
    lp = np.log(-np.log1p(-cif(3.0)))
    distorted = -np.expm1(-np.exp(0.3 + 1.5 * lp))  # too extreme and too high
    a, b = recalibration_fit(tg, distorted, 3.0)
    assert b == pytest.approx(1 / 1.5, rel=0.1) and a == pytest.approx(-0.3 / 1.5, abs=0.1)
    before = calibration(tg, distorted, 3.0)
    assert before.slope == pytest.approx(b)  # the fit whose slope calibration() reports
    fixed = -np.expm1(-np.exp(a + b * np.log(-np.log1p(-distorted))))
    after = calibration(tg, fixed, 3.0)
    assert after.slope == pytest.approx(1.0, abs=1e-6)
    assert after.intercept == pytest.approx(0.0, abs=1e-6)
    assert after.ici < 0.01 < before.ici
    with pytest.raises(VfriskError, match="no fracture observed"):
        recalibration_fit(SurvivalTarget.from_arrays([1.0, 4.0], [0, 1]), [0.1, 0.2], 3.0)


def test_calibration_rejects_non_probabilities():
    tg, cif = _cohort(500, seed=23)
    with pytest.raises(VfriskError, match="probabilities"):
        calibration(tg, cif(3.0) * 10, 3.0)
