"""Cross-sectional detection of prevalent vertebral fracture: AUROC, DeLong test, thresholds.

* AUROC = Mann-Whitney probability that a fractured patient scores above a non-fractured
  one, ties 1/2 (= ``sklearn.metrics.roc_auc_score``).
* Variance and the paired test by DeLong, DeLong & Clarke-Pearson (Biometrics
  1988;44:837-845): structural components ``V10`` (cases) and ``V01`` (controls), the
  covariance of two AUCs from their sample covariances; O(n log n) by sorting (the
  "fast DeLong" idea of Sun & Xu, IEEE Signal Process Lett 2014;21:1389-1393).
* A paired bootstrap alternative (``method="bootstrap"``) resamples patients.
* Sensitivity, specificity, PPV, NPV at thresholds, "positive" meaning ``score >= threshold``,
  with Wilson score intervals (Wilson, JASA 1927;22:209-212).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from engine.errors import VfriskError
from engine.evaluation import bootstrap as bs
from engine.evaluation._pairs import auc_sums
from engine.evaluation.target import check_scores

__all__ = [
    "AucComparison",
    "AucResult",
    "ThresholdMetrics",
    "auroc",
    "compare_auroc",
    "threshold_metrics",
]


class AucResult(NamedTuple):
    """AUROC with DeLong interval; ``n`` patients, ``events`` with fracture."""

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    n: int
    events: int


class AucComparison(NamedTuple):
    """Paired AUROC comparison: ``difference = auc_a - auc_b`` and its two-sided test."""

    auc_a: float
    auc_b: float
    difference: float
    ci_low: float
    ci_high: float
    se: float
    p_value: float
    method: str
    n: int
    events: int


class ThresholdMetrics(NamedTuple):
    """Per-threshold arrays, shape (k,); ``*_low``/``*_high`` are Wilson intervals."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    sensitivity_low: np.ndarray
    sensitivity_high: np.ndarray
    specificity: np.ndarray
    specificity_low: np.ndarray
    specificity_high: np.ndarray
    ppv: np.ndarray
    npv: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    tn: np.ndarray
    fn: np.ndarray


def _labels(y: object) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1 or not np.isin(a, (0, 1)).all():
        raise VfriskError("bad_argument", "fracture labels must be a 1-D array of 0/1 (or bool)")
    a = a.astype(bool)
    if a.all() or not a.any():
        raise VfriskError("bad_argument", "AUROC needs patients with and without fracture")
    return a


def _placements(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    sums = auc_sums(s, y.astype(float), (~y).astype(float))
    m, k = int(y.sum()), int((~y).sum())
    return sums.num.sum() / 2 / sums.total, sums.num[y] / k, sums.num[~y] / m


def auroc(y_true: object, score: object, *, alpha: float = 0.05) -> AucResult:
    """AUROC of ``score`` for a binary fracture label with a DeLong interval.

    Parameters
    ----------
    y_true : array_like, shape (n,)
        1 = fracture present, 0 = absent.
    score : array_like, shape (n,)
        Higher = more likely fractured.
    alpha : float
        1 - confidence level.

    Returns
    -------
    AucResult
    """
    y = _labels(y_true)
    s = check_scores(score, y.size)
    auc, v10, v01 = _placements(y, s)
    se = float(np.sqrt(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size))
    iv = bs.normal_interval(auc, se, alpha)
    return AucResult(
        float(auc), max(iv.ci_low, 0.0), min(iv.ci_high, 1.0), se, y.size, int(y.sum())
    )


def compare_auroc(
    y_true: object,
    score_a: object,
    score_b: object,
    *,
    method: str = "delong",
    n_boot: int = bs.N_BOOT,
    alpha: float = 0.05,
    seed: int = 0,
) -> AucComparison:
    """Paired comparison of two AUROCs on the same patients.

    Parameters
    ----------
    y_true : array_like, shape (n,)
    score_a, score_b : array_like, shape (n,)
    method : {"delong", "bootstrap"}
        DeLong's test, or a paired patient bootstrap (percentile interval, Wald p-value
        from the bootstrap standard error); the bootstrap holds n x n matrices (small n).
    n_boot, alpha, seed
        Bootstrap resamples, 1 - confidence level, seed.

    Returns
    -------
    AucComparison
    """
    y = _labels(y_true)
    a = check_scores(score_a, y.size, "score_a")
    b = check_scores(score_b, y.size, "score_b")
    auc_a, a10, a01 = _placements(y, a)
    auc_b, b10, b01 = _placements(y, b)
    diff = float(auc_a - auc_b)
    if method == "delong":
        s10 = np.cov(np.vstack((a10, b10)))
        s01 = np.cov(np.vstack((a01, b01)))
        cov = s10 / a10.size + s01 / a01.size
        se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
        iv = bs.normal_interval(diff, se, alpha)
        iv = bs.Interval(iv.ci_low, iv.ci_high, se, "delong")
    elif method == "bootstrap":
        c = np.outer(y, ~y).astype(float)

        def credit(s: np.ndarray) -> np.ndarray:
            return c * np.where(
                s[:, None] > s[None, :], 1.0, np.where(s[:, None] == s[None, :], 0.5, 0.0)
            )

        w = bs.bootstrap_weights(y.size, n_boot, seed)
        d = bs.quadratic_ratio(w, credit(a), c) - bs.quadratic_ratio(w, credit(b), c)
        iv = bs.percentile_interval(d, alpha)
    else:
        raise VfriskError("bad_argument", f"method must be 'delong' or 'bootstrap', got {method!r}")
    return AucComparison(
        float(auc_a),
        float(auc_b),
        diff,
        iv.ci_low,
        iv.ci_high,
        iv.se,
        bs.wald_p_value(diff, iv.se),
        iv.method,
        y.size,
        int(y.sum()),
    )


def _wilson(k: np.ndarray, n: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        mid = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return mid - half, mid + half


def threshold_metrics(
    y_true: object, score: object, thresholds: object, *, alpha: float = 0.05
) -> ThresholdMetrics:
    """Sensitivity, specificity, PPV and NPV when ``score >= threshold`` is called positive.

    Parameters
    ----------
    y_true : array_like, shape (n,)
    score : array_like, shape (n,)
    thresholds : array_like, shape (k,)
        E.g. ``-HU`` cut-offs (Pickhardt 2013: L1 <= 160 HU means ``-hu >= -160``) or
        probabilities.
    alpha : float
        1 - confidence level of the Wilson intervals.

    Returns
    -------
    ThresholdMetrics
        PPV/NPV are NaN where nobody is called positive/negative.
    """
    y = _labels(y_true)
    s = check_scores(score, y.size)
    thr = np.atleast_1d(np.asarray(thresholds, dtype=float))
    pos_sorted = np.sort(s[y])
    neg_sorted = np.sort(s[~y])
    fn = np.searchsorted(pos_sorted, thr, side="left")
    tn = np.searchsorted(neg_sorted, thr, side="left")
    tp = pos_sorted.size - fn
    fp = neg_sorted.size - tn
    with np.errstate(invalid="ignore", divide="ignore"):
        sens, spec = tp / (tp + fn), tn / (tn + fp)
        ppv = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        npv = np.where(tn + fn > 0, tn / np.maximum(tn + fn, 1), np.nan)
    sl, sh = _wilson(tp, tp + fn, alpha)
    pl, ph = _wilson(tn, tn + fp, alpha)
    return ThresholdMetrics(thr, sens, sl, sh, spec, pl, ph, ppv, npv, tp, fp, tn, fn)
