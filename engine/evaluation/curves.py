"""Kaplan-Meier and Aalen-Johansen curves, risk-group curves, numbers at risk, log-rank test.

Hand-written rather than lifelines' fitters because the per-site report draws these for
up to 1M patients per site many times (risk groups, calibration deciles): lifelines'
``AalenJohansenFitter`` jitters tied times at random and both fitters build pandas tables
row by row. The estimates equal lifelines' (tests), with the same confidence intervals:

* Kaplan-Meier with the "exponential Greenwood" interval on ``log(-log S)`` (lifelines'
  default; Kalbfleisch & Prentice 2002, eq. 1.10).
* Aalen-Johansen cumulative incidence of fracture with deaths competing, variance by the
  delta-method (Greenwood-type) formula of Collett, *Modelling Survival Data in Medical
  Research*, 3rd ed., p. 411 (lifelines' choice), interval on ``log(-log F)``.
* Log-rank test for k groups (Mantel 1966), deaths censored (cause-specific), as
  ``lifelines.statistics.multivariate_logrank_test``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from engine.errors import VfriskError
from engine.evaluation.target import COMPETING, EVENT, SurvivalTarget, check_scores

__all__ = [
    "GroupCurves",
    "IncidenceCurve",
    "LogRankResult",
    "SurvivalCurve",
    "aalen_johansen",
    "curves_by_risk_group",
    "kaplan_meier",
    "logrank_test",
    "numbers_at_risk",
    "step_at",
]


class SurvivalCurve(NamedTuple):
    """Kaplan-Meier fracture-free survival at each distinct time, arrays shape (k,).

    ``times`` in years; ``at_risk`` just before each time; ``events`` fractures and
    ``censored`` censorings (deaths included) at each time.
    """

    times: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    censored: np.ndarray


class IncidenceCurve(NamedTuple):
    """Aalen-Johansen cumulative incidence of fracture, arrays shape (k,).

    ``survival`` is the all-cause event-free survival ``S(t)``; ``cif + cif_competing +
    survival == 1`` at every time.
    """

    times: np.ndarray
    cif: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    cif_competing: np.ndarray
    survival: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    competing: np.ndarray


class LogRankResult(NamedTuple):
    """k-group log-rank test: chi-square ``statistic`` on ``df`` degrees of freedom."""

    statistic: float
    df: int
    p_value: float
    n: int
    events: int


class GroupCurves(NamedTuple):
    """Curves per risk group (lowest risk first) and the log-rank test between them.

    ``edges`` are the score cut points (group g holds ``edges[g-1] < score <= edges[g]``);
    ``at_risk`` has shape (groups, len(times_at_risk)).
    """

    labels: tuple[str, ...]
    edges: np.ndarray
    curves: tuple[SurvivalCurve | IncidenceCurve, ...]
    times_at_risk: np.ndarray
    at_risk: np.ndarray
    logrank: LogRankResult


def _table(target: SurvivalTarget) -> tuple[np.ndarray, ...]:
    """Distinct times, at risk just before, fractures, deaths, censorings there; shape (k,)."""
    uniq, inv = np.unique(target.time, return_inverse=True)
    k = uniq.size
    total = np.bincount(inv, minlength=k)
    d1 = np.bincount(inv, weights=(target.event == EVENT), minlength=k)
    d2 = np.bincount(inv, weights=(target.event == COMPETING), minlength=k)
    at_risk = target.n - np.concatenate(([0], np.cumsum(total)[:-1]))
    return uniq, at_risk.astype(float), d1, d2, total - d1 - d2


def _loglog_bounds(p: np.ndarray, se_loglog: np.ndarray, alpha: float) -> tuple[np.ndarray, ...]:
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(invalid="ignore", over="ignore"):
        a, b = p ** np.exp(z * se_loglog), p ** np.exp(-z * se_loglog)
    return a, b


def kaplan_meier(target: SurvivalTarget, *, alpha: float = 0.05) -> SurvivalCurve:
    """Kaplan-Meier fracture-free survival, deaths censored (cause-specific).

    Parameters
    ----------
    target : SurvivalTarget
    alpha : float
        1 - confidence level of the exponential-Greenwood interval.

    Returns
    -------
    SurvivalCurve
    """
    t, n, d1, d2, c = _table(target)
    s = np.cumprod(1.0 - d1 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        gw = np.cumsum(np.where(d1 > 0, d1 / (n * (n - d1)), 0.0))
        se = np.sqrt(gw) / np.abs(np.log(s))
    lo, hi = _loglog_bounds(s, se, alpha)
    lo = np.where(np.isfinite(se), lo, s)
    hi = np.where(np.isfinite(se), hi, s)
    return SurvivalCurve(t, s, np.nan_to_num(lo), np.minimum(hi, 1.0), n, d1, c + d2)


def aalen_johansen(target: SurvivalTarget, *, alpha: float = 0.05) -> IncidenceCurve:
    """Aalen-Johansen cumulative incidence of fracture with death as competing event.

    Without deaths it equals ``1 - kaplan_meier(target).survival``.

    Parameters
    ----------
    target : SurvivalTarget
    alpha : float
        1 - confidence level of the interval (Collett's variance, ``log(-log F)`` scale).

    Returns
    -------
    IncidenceCurve
    """
    t, n, d1, d2, _ = _table(target)
    d = d1 + d2
    s = np.cumprod(1.0 - d / n)
    s_lag = np.concatenate(([1.0], s[:-1]))
    f1 = np.cumsum(s_lag * d1 / n)
    f2 = np.cumsum(s_lag * d2 / n)
    # Collett p.411: sum_i a_i (F(t) - F_i)^2 + sum_i b_i - 2 sum_i c_i (F(t) - F_i),
    # expanded so each term is a cumulative sum (O(k)).
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(d > 0, d / (n * (n - d)), 0.0)
    a = np.where(np.isfinite(a), a, 0.0)
    b = s_lag**2 * d1 * (n - d1) / n**3
    cc = s_lag * d1 / n**2
    ca, caf, caf2 = np.cumsum(a), np.cumsum(a * f1), np.cumsum(a * f1**2)
    var = (
        f1**2 * ca
        - 2 * f1 * caf
        + caf2
        + np.cumsum(b)
        - 2 * (f1 * np.cumsum(cc) - np.cumsum(cc * f1))
    )
    var = np.maximum(var, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(var) / (f1 * np.abs(np.log(f1)))
    lo, hi = _loglog_bounds(f1, se, alpha)  # F^{exp(+z se)} <= F for 0 < F < 1
    ok = np.isfinite(se) & (f1 > 0)
    lo, hi = np.where(ok, lo, f1), np.where(ok, hi, f1)
    return IncidenceCurve(t, f1, lo, hi, f2, s, n, d1, d2)


def step_at(times: np.ndarray, values: np.ndarray, at: object, start: float) -> np.ndarray:
    """Right-continuous step function ``values`` (jumps at ``times``) evaluated at ``at``.

    ``start`` is the value before the first time (1 for survival, 0 for incidence).
    """
    idx = np.searchsorted(times, np.asarray(at, dtype=float), side="right")
    return np.concatenate(([start], values))[idx]


def numbers_at_risk(target: SurvivalTarget, times: object) -> np.ndarray:
    """Patients still followed (time >= t) at each ``t`` of ``times`` (years), shape (k,)."""
    srt = np.sort(target.time)
    return target.n - np.searchsorted(srt, np.asarray(times, dtype=float), side="left")


def logrank_test(target: SurvivalTarget, groups: object) -> LogRankResult:
    """k-group log-rank test of fracture-free survival, deaths censored.

    Parameters
    ----------
    target : SurvivalTarget
    groups : array_like, shape (n,)
        Group label of each patient (any hashable values; at least two groups).

    Returns
    -------
    LogRankResult
    """
    labels, g = np.unique(np.asarray(groups), return_inverse=True)
    k = labels.size
    if k < 2 or g.size != target.n:
        raise VfriskError(
            "bad_argument", "log-rank test needs one group label per patient, >= 2 groups"
        )
    uniq, inv = np.unique(target.time, return_inverse=True)
    m = uniq.size
    ev = target.fracture.astype(float)
    # per group and distinct time: leaving the risk set and fractures, shape (k, m)
    leave = np.zeros((k, m))
    obs = np.zeros((k, m))
    np.add.at(leave, (g, inv), 1.0)
    np.add.at(obs, (g, inv), ev)
    n_g = leave[:, ::-1].cumsum(axis=1)[:, ::-1]  # at risk just before each time
    n_all = n_g.sum(axis=0)
    d_all = obs.sum(axis=0)
    keep = d_all > 0
    n_g, n_all, d_all, obs = n_g[:, keep], n_all[keep], d_all[keep], obs[:, keep]
    frac = n_g / n_all
    o_minus_e = (obs - d_all * frac).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(n_all > 1, d_all * (n_all - d_all) / (n_all - 1), 0.0)
    v = np.einsum("t,it,jt->ij", scale, frac, frac) * -1.0
    v[np.diag_indices(k)] += (scale * frac).sum(axis=1)
    u = o_minus_e[:-1]
    stat = float(u @ np.linalg.solve(v[:-1, :-1], u))
    return LogRankResult(stat, k - 1, float(stats.chi2.sf(stat, k - 1)), target.n, target.n_events)


def curves_by_risk_group(
    target: SurvivalTarget,
    score: object,
    *,
    groups: int = 3,
    thresholds: object | None = None,
    times_at_risk: object = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0),
    competing: str = "auto",
    alpha: float = 0.05,
) -> GroupCurves:
    """Fracture curves by risk group: quantile groups of ``score`` or user thresholds.

    Parameters
    ----------
    target : SurvivalTarget
    score : array_like, shape (n,)
        Risk score, higher = higher risk.
    groups : int
        Number of quantile groups (3 tertiles, 4 quartiles) when ``thresholds`` is None.
    thresholds : array_like, optional
        Increasing score cut points; group g holds ``thresholds[g-1] < score <= thresholds[g]``.
    times_at_risk : array_like
        Years at which numbers at risk are reported.
    competing : {"auto", "km", "aj"}
        "aj": Aalen-Johansen incidence; "km": Kaplan-Meier survival (deaths censored);
        "auto": Aalen-Johansen when any death is present.
    alpha : float
        1 - confidence level of the bands.

    Returns
    -------
    GroupCurves
    """
    s = check_scores(score, target.n)
    if thresholds is None:
        if groups < 2:
            raise VfriskError("bad_argument", f"groups must be >= 2, got {groups}")
        edges = np.quantile(s, np.arange(1, groups) / groups)
    else:
        edges = np.asarray(thresholds, dtype=float)
        if edges.ndim != 1 or edges.size == 0 or (np.diff(edges) <= 0).any():
            raise VfriskError("bad_argument", f"thresholds must increase, got {thresholds!r}")
    gid = np.searchsorted(edges, s, side="left")
    use_aj = competing == "aj" or (competing == "auto" and target.has_competing)
    bounds = np.concatenate(([-np.inf], edges, [np.inf]))
    labels, curves, risk = [], [], []
    t_risk = np.asarray(times_at_risk, dtype=float)
    for g in range(edges.size + 1):
        sub = target.subset(gid == g)
        labels.append(f"({bounds[g]:.4g}, {bounds[g + 1]:.4g}]")
        if sub.n == 0:
            raise VfriskError("bad_argument", f"risk group {labels[-1]} is empty; use fewer groups")
        curves.append(
            aalen_johansen(sub, alpha=alpha) if use_aj else kaplan_meier(sub, alpha=alpha)
        )
        risk.append(numbers_at_risk(sub, t_risk))
    return GroupCurves(
        tuple(labels), edges, tuple(curves), t_risk, np.array(risk), logrank_test(target, gid)
    )
