"""Inverse probability of censoring weights: the Kaplan-Meier estimate of ``G(t) = P(C > t)``.

Hand-written (not ``sksurv.nonparametric.CensoringDistributionEstimator``) because the
vectorized bootstrap and the competing-risk Brier score need ``G`` on arrays of any time
without refitting a scikit-learn estimator, and because with competing risks the censoring
event is ``event == 0`` only, whereas scikit-survival sees a death as censoring. The
estimator follows scikit-survival's ``kaplan_meier_estimator(..., reverse=True)``: at a
time where events and censorings tie, the events leave the risk set first, and ``G`` is
right-continuous (``G(t)`` includes the censorings at ``t``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from engine.evaluation.target import CENSORED, EVENT, SurvivalTarget

__all__ = ["CensoringSurvival", "censoring_survival"]


class CensoringSurvival(NamedTuple):
    """Step function ``G``: ``times`` shape (k,) years ascending, ``prob`` shape (k,)."""

    times: np.ndarray
    prob: np.ndarray

    def at(self, t: np.ndarray | float) -> np.ndarray:
        """``G(t)`` (right-continuous, 1 before the first time), same shape as ``t``."""
        idx = np.searchsorted(self.times, np.asarray(t, dtype=float), side="right")
        return np.concatenate(([1.0], self.prob))[idx]


def censoring_survival(
    target: SurvivalTarget, *, competing_as_censoring: bool
) -> CensoringSurvival:
    """Kaplan-Meier estimate of the censoring survival function ``G``.

    Parameters
    ----------
    target : SurvivalTarget
    competing_as_censoring : bool
        True: only fractures (code 1) end follow-up, deaths count as censoring; this is what
        scikit-survival computes for the Uno c-index and the cumulative/dynamic AUC when
        deaths are coded as censored. False: code 0 alone is censoring (deaths are observed
        outcomes), as needed for competing-risk Brier scores and calibration.

    Returns
    -------
    CensoringSurvival
    """
    t = target.time
    cens = target.event != EVENT if competing_as_censoring else target.event == CENSORED
    uniq, inv = np.unique(t, return_inverse=True)
    total = np.bincount(inv, minlength=uniq.size)
    n_cens = np.bincount(inv, weights=cens.astype(float), minlength=uniq.size)
    at_risk = t.size - np.concatenate(([0], np.cumsum(total)[:-1]))
    # events before censorings at a tied time (scikit-survival's reverse=True rule)
    denom = at_risk - (total - n_cens)
    ratio = np.divide(n_cens, denom, out=np.zeros(uniq.size), where=n_cens > 0)
    return CensoringSurvival(uniq, np.cumprod(1.0 - ratio))
