"""Calibration of predicted fracture probabilities at a horizon ``t``.

Observed risk is the cumulative incidence of fracture by ``t``: Aalen-Johansen with death
as competing event when deaths are present, else ``1 - Kaplan-Meier`` (``curves``).

* **Table by risk group** (deciles by default): mean predicted risk vs observed incidence
  with its confidence interval, per group of equal size.
* **Recalibration on the complementary log-log scale** with inverse probability of
  censoring weights (IPCW; Gerds & Schumacher, Biom J 2006;48:1029-1040): the status at
  ``t`` is known for patients followed beyond ``t`` (``Y = 0``, weight ``1/G(t)``) and for
  those with fracture (``Y = 1``) or death (``Y = 0``) by ``t`` (weight ``1/G(T_i)``);
  ``G`` is the Kaplan-Meier censoring survival (code 0 censoring). A weighted binomial GLM
  with cloglog link is fitted:

  - slope ``b`` from ``cloglog P(Y=1) = a + b * cloglog(F)`` (ideal 1);
  - intercept ``a`` from ``cloglog P(Y=1) = a + cloglog(F)`` (slope fixed at 1,
    calibration-in-the-large; ideal 0). The cloglog scale is that of a proportional
    hazards recalibration ``H_obs(t) = exp(a) * H_pred(t)^b`` (Crowson, Atkinson &
    Therneau, Stat Methods Med Res 2016;25:1692-1706); intervals are robust (sandwich)
    Wald intervals, treating the weights as fixed.
  - **Smooth calibration curve**: the same weighted GLM on a restricted cubic spline of
    ``cloglog(F)`` (knots at the 5/35/65/95 % quantiles; Harrell, Regression Modeling
    Strategies, 2015, sec. 2.4.6); as Austin, Harrell & van Klaveren, Stat Med
    2020;39:2714-2742, ``ICI`` is the mean over patients of ``|smoothed observed - F|``,
    ``E50`` its median and ``E90`` its 90th percentile.

Hand-written: neither lifelines nor scikit-survival calibrates external predictions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from engine.errors import VfriskError
from engine.evaluation.curves import aalen_johansen, kaplan_meier, step_at
from engine.evaluation.ipcw import censoring_survival
from engine.evaluation.target import COMPETING, EVENT, SurvivalTarget, check_scores

__all__ = [
    "CalibrationResult",
    "CalibrationTable",
    "calibration",
    "calibration_table",
    "recalibration_fit",
]

_EPS = 1e-10


class CalibrationTable(NamedTuple):
    """Predicted vs observed risk by ``horizon`` per risk group, arrays shape (groups,)."""

    horizon: float
    n: np.ndarray
    events: np.ndarray
    predicted: np.ndarray
    observed: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    estimator: str


class CalibrationResult(NamedTuple):
    """Calibration summary at ``horizon`` (years); see the module docstring for definitions.

    ``curve_predicted``/``curve_observed`` (shape (k,)) trace the smooth calibration curve
    on a grid of predicted risks between the 1st and 99th percentile.
    """

    horizon: float
    intercept: float
    intercept_ci_low: float
    intercept_ci_high: float
    slope: float
    slope_ci_low: float
    slope_ci_high: float
    ici: float
    e50: float
    e90: float
    curve_predicted: np.ndarray
    curve_observed: np.ndarray
    n: int
    events: int


def _check_risk(target: SurvivalTarget, risk: object, horizon: float) -> np.ndarray:
    f = check_scores(risk, target.n, "risk")
    if (f < 0).any() or (f > 1).any():
        raise VfriskError("bad_argument", "predicted risks must be probabilities in [0, 1]")
    if not np.isfinite(horizon) or horizon <= 0:
        raise VfriskError("bad_argument", f"horizon must be > 0 years, got {horizon!r}")
    return f


def calibration_table(
    target: SurvivalTarget, risk: object, horizon: float, *, groups: int = 10, alpha: float = 0.05
) -> CalibrationTable:
    """Mean predicted vs observed fracture incidence by ``horizon`` in equal-size risk groups.

    Parameters
    ----------
    target : SurvivalTarget
    risk : array_like, shape (n,)
        Predicted probability of fracture by ``horizon``.
    horizon : float
        Years.
    groups : int
        Number of groups (10 = deciles), lowest risk first.
    alpha : float
        1 - confidence level of the observed incidence.

    Returns
    -------
    CalibrationTable
        ``estimator`` is "aalen-johansen" or "kaplan-meier".
    """
    f = _check_risk(target, risk, horizon)
    if groups < 1 or groups > target.n:
        raise VfriskError("bad_argument", f"groups must be in 1..{target.n}, got {groups}")
    aj = target.has_competing
    parts = np.array_split(np.argsort(f, kind="stable"), groups)
    rows = np.full((6, groups), np.nan)
    for g, idx in enumerate(parts):
        sub = target.subset(idx)
        if aj:
            c = aalen_johansen(sub, alpha=alpha)
            obs = [step_at(c.times, v, horizon, 0.0) for v in (c.cif, c.ci_low, c.ci_high)]
        else:
            c = kaplan_meier(sub, alpha=alpha)
            obs = [1 - step_at(c.times, v, horizon, 1.0) for v in (c.survival, c.ci_high, c.ci_low)]
        rows[:, g] = (idx.size, int(sub.fracture.sum()), f[idx].mean(), *obs)
    return CalibrationTable(
        float(horizon),
        rows[0].astype(int),
        rows[1].astype(int),
        rows[2],
        rows[3],
        rows[4],
        rows[5],
        "aalen-johansen" if aj else "kaplan-meier",
    )


def _cloglog(p: np.ndarray) -> np.ndarray:
    return np.log(-np.log1p(-np.clip(p, _EPS, 1 - _EPS)))


def _glm_cloglog(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, offset: np.ndarray, iters: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted binomial GLM, cloglog link, by Fisher scoring; returns (beta, sandwich cov)."""
    beta = np.zeros(x.shape[1])
    for _ in range(iters):
        eta = np.clip(offset + x @ beta, -30, 5)
        mu = np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS)
        dmu = np.exp(eta - np.exp(eta))
        var = mu * (1 - mu)
        wt = w * dmu**2 / var
        z = eta - offset + (y - mu) / np.maximum(dmu, _EPS)
        xtw = x.T * wt
        new = np.linalg.solve(xtw @ x, xtw @ z)
        done = np.max(np.abs(new - beta)) < 1e-10
        beta = new
        if done:
            break
    eta = np.clip(offset + x @ beta, -30, 5)
    mu = np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS)
    dmu = np.exp(eta - np.exp(eta))
    bread = np.linalg.inv((x.T * (w * dmu**2 / (mu * (1 - mu)))) @ x)
    score = x * (w * (y - mu) * dmu / (mu * (1 - mu)))[:, None]
    return beta, bread @ (score.T @ score) @ bread


def _rcs(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted cubic spline basis (Harrell), shape (n, len(knots) - 1) incl. linear term."""
    k = knots
    scale = (k[-1] - k[0]) ** 2
    cols = [x]
    for j in range(k.size - 2):
        t = (
            np.maximum(x - k[j], 0) ** 3
            - np.maximum(x - k[-2], 0) ** 3 * (k[-1] - k[j]) / (k[-1] - k[-2])
            + np.maximum(x - k[-1], 0) ** 3 * (k[-2] - k[j]) / (k[-1] - k[-2])
        )
        cols.append(t / scale)
    return np.column_stack(cols)


def _known_status(target: SurvivalTarget, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """IPCW outcome ``Y`` (fracture by ``horizon``) and weight, shape (n,)."""
    g = censoring_survival(target, competing_as_censoring=False)
    before = target.time <= horizon
    ended = before & ((target.event == EVENT) | (target.event == COMPETING))
    g_obs, g_t = g.at(target.time), float(g.at(horizon))
    w = np.zeros(target.n)
    w[ended] = 1.0 / np.maximum(g_obs[ended], _EPS)
    w[~before] = 1.0 / max(g_t, _EPS)
    y = (before & (target.event == EVENT)).astype(float)
    return y, w


def _known(
    target: SurvivalTarget, lp: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cloglog(F)``, ``Y`` and IPCW weight of the patients whose status at ``horizon`` counts."""
    y, w = _known_status(target, horizon)
    keep = w > 0
    if y[keep].sum() == 0:
        raise VfriskError(
            "bad_argument", f"no fracture observed by {horizon} years; cannot calibrate"
        )
    return lp[keep], y[keep], w[keep]


def recalibration_fit(target: SurvivalTarget, risk: object, horizon: float) -> tuple[float, float]:
    """Intercept ``a`` and slope ``b`` of ``cloglog P(Y=1) = a + b * cloglog(F)`` (IPCW).

    The joint fit whose ``b`` is :func:`calibration`'s slope; ``1 - exp(-exp(a + b *
    cloglog(F)))`` is then the recalibrated risk by ``horizon`` (a proportional hazards
    recalibration, module doc).

    Parameters
    ----------
    target : SurvivalTarget
    risk : array_like, shape (n,)
        Predicted probability of fracture by ``horizon``.
    horizon : float
        Years.

    Returns
    -------
    tuple of float
        ``(a, b)``.
    """
    lp = _cloglog(_check_risk(target, risk, horizon))
    xk, yk, wk = _known(target, lp, horizon)
    beta, _ = _glm_cloglog(np.column_stack((np.ones(xk.size), xk)), yk, wk, np.zeros(xk.size))
    return float(beta[0]), float(beta[1])


def calibration(
    target: SurvivalTarget, risk: object, horizon: float, *, alpha: float = 0.05
) -> CalibrationResult:
    """Calibration intercept and slope (cloglog scale), smooth curve, ICI, E50 and E90.

    Parameters
    ----------
    target : SurvivalTarget
    risk : array_like, shape (n,)
        Predicted probability of fracture by ``horizon``.
    horizon : float
        Years.
    alpha : float
        1 - confidence level of the intercept and slope intervals.

    Returns
    -------
    CalibrationResult
    """
    f = _check_risk(target, risk, horizon)
    lp = _cloglog(f)
    xk, yk, wk = _known(target, lp, horizon)
    ones = np.ones((xk.size, 1))
    z = stats.norm.ppf(1 - alpha / 2)
    (a,), cov_a = _glm_cloglog(ones, yk, wk, xk)
    beta, cov_b = _glm_cloglog(np.column_stack((ones, xk)), yk, wk, np.zeros(xk.size))
    se_a, se_b = np.sqrt(cov_a[0, 0]), np.sqrt(cov_b[1, 1])
    knots = np.quantile(lp, [0.05, 0.35, 0.65, 0.95])
    if np.unique(knots).size < 4:
        knots = np.unique(np.quantile(lp, [0.05, 0.5, 0.95]))
    if knots.size >= 3:
        basis = lambda v: np.column_stack((np.ones(v.size), _rcs(v, knots)))  # noqa: E731
    else:
        basis = lambda v: np.column_stack((np.ones(v.size), v))  # noqa: E731
    gamma, _ = _glm_cloglog(basis(xk), yk, wk, np.zeros(xk.size))

    def smooth(v: np.ndarray) -> np.ndarray:
        return -np.expm1(-np.exp(np.clip(basis(v) @ gamma, -30, 5)))

    err = np.abs(smooth(lp) - f)
    grid = np.linspace(*np.quantile(f, [0.01, 0.99]), 50)
    return CalibrationResult(
        float(horizon),
        float(a),
        float(a - z * se_a),
        float(a + z * se_a),
        float(beta[1]),
        float(beta[1] - z * se_b),
        float(beta[1] + z * se_b),
        float(err.mean()),
        float(np.median(err)),
        float(np.quantile(err, 0.9)),
        grid,
        smooth(_cloglog(grid)),
        target.n,
        target.n_events,
    )
