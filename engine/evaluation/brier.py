"""Brier score at horizons and the integrated Brier score, with censoring weights.

Definition (Graf et al., Stat Med 1999;18:2529-2545; for competing risks Schoop et al.,
Stat Med 2011;30:2817-2830): with ``F_i(t)`` the predicted probability of fracture by ``t``
and ``G`` the Kaplan-Meier censoring survival (code 0 alone is censoring),

    BS(t) = mean_i [ 1{T_i <= t, fracture} (1 - F_i)^2 / G(T_i)
                   + 1{T_i <= t, death}    F_i^2 / G(T_i)
                   + 1{T_i > t}            F_i^2 / G(t) ].

A death before ``t`` is a known non-fracture (the competing-risk Brier score of the
cumulative incidence). Without deaths this equals ``sksurv.metrics.brier_score`` given
survival ``1 - F`` (``G`` at the observed time is right-continuous there, as in
scikit-survival). The integrated score is the trapezoidal integral over the given times
divided by their range, as ``sksurv.metrics.integrated_brier_score``. Hand-written because
scikit-survival treats deaths as censored. Intervals: normal, from the per-patient terms
(a mean of fixed-weight terms; weights held fixed).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from engine.errors import VfriskError
from engine.evaluation.ipcw import censoring_survival
from engine.evaluation.target import COMPETING, EVENT, SurvivalTarget, check_horizons

__all__ = ["BrierResult", "brier_score"]


class BrierResult(NamedTuple):
    """Brier score per horizon (arrays shape (k,)) and the integrated Brier score.

    ``integrated`` is NaN for a single horizon.
    """

    times: np.ndarray
    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    integrated: float
    n: int
    events: int


def brier_score(
    target: SurvivalTarget,
    risk: object,
    times: object,
    *,
    train: SurvivalTarget | None = None,
    alpha: float = 0.05,
) -> BrierResult:
    """IPCW Brier score of predicted fracture probabilities at ``times``.

    Parameters
    ----------
    target : SurvivalTarget
    risk : array_like, shape (n, k) or (n,) for one horizon
        Predicted probability of fracture by each horizon, in [0, 1].
    times : array_like, shape (k,)
        Horizons in years, increasing.
    train : SurvivalTarget, optional
        Data for the censoring distribution (default: ``target``).
    alpha : float
        1 - confidence level.

    Returns
    -------
    BrierResult
    """
    t = check_horizons(times)
    f = np.asarray(risk, dtype=float)
    if f.ndim == 1:
        f = f[:, None]
    if f.shape != (target.n, t.size):
        raise VfriskError(
            "bad_argument", f"risk must have shape ({target.n}, {t.size}), got {f.shape}"
        )
    if not np.isfinite(f).all() or (f < 0).any() or (f > 1).any():
        raise VfriskError("bad_argument", "predicted risks must be probabilities in [0, 1]")
    g = censoring_survival(train if train is not None else target, competing_as_censoring=False)
    g_obs = g.at(target.time)
    g_t = g.at(t)
    inv_obs = np.divide(1.0, g_obs, out=np.zeros_like(g_obs), where=g_obs > 0)
    inv_t = np.divide(1.0, g_t, out=np.zeros_like(g_t), where=g_t > 0)
    before = target.time[:, None] <= t[None, :]
    frac = before & (target.event == EVENT)[:, None]
    death = before & (target.event == COMPETING)[:, None]
    after = ~before
    terms = (
        frac * (1.0 - f) ** 2 * inv_obs[:, None]
        + death * f**2 * inv_obs[:, None]
        + after * f**2 * inv_t[None, :]
    )
    est = terms.mean(axis=0)
    z = stats.norm.ppf(1 - alpha / 2)
    se = terms.std(axis=0, ddof=1) / np.sqrt(target.n)
    ibs = float(np.trapezoid(est, t) / (t[-1] - t[0])) if t.size > 1 else float("nan")
    return BrierResult(t, est, est - z * se, est + z * se, ibs, target.n, target.n_events)
