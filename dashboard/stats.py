"""Survival and ROC statistics from counts that DuckDB aggregated (no per-patient rows).

On a million patients the dashboard cannot load follow-up per patient, so the database
returns fractures and censorings per day of follow-up (``engine.store.dashboard_tables``)
and these functions give the same Kaplan-Meier curve, Greenwood log-log band and
log-rank test as :func:`engine.evaluation.kaplan_meier` and
:func:`engine.evaluation.logrank_test` would on the patients (tested against them), and
ROC curves from cases and controls per score bin.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

__all__ = ["CountCurve", "RocCurve", "km_from_counts", "logrank_from_counts", "roc_from_counts"]


class CountCurve(NamedTuple):
    """Kaplan-Meier fracture-free survival (deaths censored) from day counts.

    Attributes
    ----------
    times : numpy.ndarray, shape (k,)
        Distinct follow-up times, years.
    survival, ci_low, ci_high : numpy.ndarray, shape (k,)
        S(t) just after each time and its exponential-Greenwood (log-log) interval.
    at_risk : numpy.ndarray, shape (k,)
        Patients followed up to at least each time.
    n, events : int
        Patients and fractures behind the curve.
    """

    times: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    at_risk: np.ndarray
    n: int
    events: int

    def at(self, t: float) -> tuple[float, float, float]:
        """(S, low, high) at ``t`` years (right-continuous step; 1 before the first time)."""
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        if i < 0:
            return 1.0, 1.0, 1.0
        return float(self.survival[i]), float(self.ci_low[i]), float(self.ci_high[i])

    def number_at_risk(self, t: float) -> int:
        """Patients followed for at least ``t`` years."""
        i = int(np.searchsorted(self.times, t, side="left"))
        return 0 if i >= self.times.size else int(self.at_risk[i])


def _table(
    times: np.ndarray, events: np.ndarray, censored: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=float)
    d = np.asarray(events, dtype=float)
    c = np.asarray(censored, dtype=float)
    uniq, inv = np.unique(t, return_inverse=True)
    d_u = np.bincount(inv, weights=d, minlength=uniq.size)
    tot = np.bincount(inv, weights=d + c, minlength=uniq.size)
    at_risk = tot.sum() - np.concatenate(([0.0], np.cumsum(tot)[:-1]))
    return uniq, at_risk, d_u


def km_from_counts(
    times: object, events: object, censored: object, *, alpha: float = 0.05
) -> CountCurve:
    """Kaplan-Meier curve from fractures and censorings counted per follow-up time.

    Parameters
    ----------
    times : array_like, shape (m,)
        Follow-up times, years (repeats allowed: their counts add up).
    events, censored : array_like, shape (m,)
        Fractures and censorings (deaths included) at each time.
    alpha : float
        1 - confidence level of the band.

    Returns
    -------
    CountCurve
    """
    t, n, d = _table(times, events, censored)
    if t.size == 0:
        empty = np.zeros(0)
        return CountCurve(empty, empty, empty, empty, empty, 0, 0)
    s = np.cumprod(1.0 - d / n)
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gw = np.cumsum(np.where(d > 0, d / (n * (n - d)), 0.0))
        se = np.sqrt(gw) / np.abs(np.log(s))
        lo, hi = s ** np.exp(z * se), s ** np.exp(-z * se)
    lo = np.where(np.isfinite(se), lo, s)
    hi = np.where(np.isfinite(se), hi, s)
    return CountCurve(
        t, s, np.nan_to_num(lo), np.minimum(hi, 1.0), n, int(n[0]), int(round(d.sum()))
    )


def logrank_from_counts(
    groups: object, times: object, events: object, censored: object
) -> tuple[float, int, float]:
    """k-group log-rank test from counts per (group, time); deaths censored.

    Returns
    -------
    (statistic, df, p_value)
        NaN statistic and p-value with fewer than two groups or no fracture.
    """
    labels, g = np.unique(np.asarray(groups), return_inverse=True)
    k = labels.size
    d = np.asarray(events, dtype=float)
    c = np.asarray(censored, dtype=float)
    if k < 2 or d.sum() == 0:
        return float("nan"), max(k - 1, 0), float("nan")
    uniq, inv = np.unique(np.asarray(times, dtype=float), return_inverse=True)
    m = uniq.size
    leave = np.zeros((k, m))
    obs = np.zeros((k, m))
    np.add.at(leave, (g, inv), d + c)
    np.add.at(obs, (g, inv), d)
    n_g = leave[:, ::-1].cumsum(axis=1)[:, ::-1]
    n_all, d_all = n_g.sum(axis=0), obs.sum(axis=0)
    keep = d_all > 0
    n_g, n_all, d_all, obs = n_g[:, keep], n_all[keep], d_all[keep], obs[:, keep]
    frac = n_g / n_all
    o_minus_e = (obs - d_all * frac).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(n_all > 1, d_all * (n_all - d_all) / (n_all - 1), 0.0)
    v = -np.einsum("t,it,jt->ij", scale, frac, frac)
    v[np.diag_indices(k)] += (scale * frac).sum(axis=1)
    u = o_minus_e[:-1]
    try:
        stat = float(u @ np.linalg.solve(v[:-1, :-1], u))
    except np.linalg.LinAlgError:
        return float("nan"), k - 1, float("nan")
    return stat, k - 1, float(stats.chi2.sf(stat, k - 1))


class RocCurve(NamedTuple):
    """An ROC curve from counts per score bin.

    Attributes
    ----------
    fpr, tpr : numpy.ndarray
        From (0, 0) to (1, 1), thresholds from the highest bin down.
    auc : float
        Trapezoidal area (ties within a bin count half, as the Mann-Whitney statistic).
    cases, controls : int
    """

    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    cases: int
    controls: int


def roc_from_counts(bins: object, cases: object, controls: object) -> RocCurve:
    """ROC curve of a score cut into bins (higher bin = higher risk).

    Parameters
    ----------
    bins : array_like, shape (m,)
        Bin index of each count row (repeats add up).
    cases, controls : array_like, shape (m,)
        Cases and controls in that bin.
    """
    b = np.asarray(bins)
    uniq, inv = np.unique(b, return_inverse=True)
    pos = np.bincount(inv, weights=np.asarray(cases, float), minlength=uniq.size)[::-1]
    neg = np.bincount(inv, weights=np.asarray(controls, float), minlength=uniq.size)[::-1]
    p, q = pos.sum(), neg.sum()
    if p == 0 or q == 0:
        return RocCurve(np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan"), int(p), int(q))
    tpr = np.concatenate(([0.0], np.cumsum(pos) / p))
    fpr = np.concatenate(([0.0], np.cumsum(neg) / q))
    auc = float(np.trapezoid(tpr, fpr))
    return RocCurve(fpr, tpr, auc, int(p), int(q))
