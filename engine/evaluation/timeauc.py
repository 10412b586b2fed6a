"""Cumulative/dynamic time-dependent AUROC at horizons, with censoring weights (IPCW).

Definition (Uno et al., JASA 2007;102:1316-1324; Hung & Chiang, Can J Stat 2010;38:8-26),
as ``sksurv.metrics.cumulative_dynamic_auc`` and the Kong et al. evaluation: at horizon
``t``, cases are fractures with ``T_i <= t`` weighted ``1 / G(T_i)``, controls are patients
still followed at ``T_j > t`` (weight 1; ``G(t)`` is common to all and cancels); the AUC is
the weighted share of case-control pairs with ``score_i > score_j``, ties counting 1/2.
Deaths are treated as censored (a death before ``t`` is neither case nor control), and
``G`` is the Kaplan-Meier censoring survival in which deaths count as censoring, so the
numbers equal scikit-survival's with deaths coded as censored.

Hand-written (O(n log n) per horizon by sorting) so the bootstrap and influence-function
intervals can reuse per-patient pair sums; scikit-survival returns only the point estimate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from engine.evaluation import bootstrap as bs
from engine.evaluation._pairs import auc_sums
from engine.evaluation.ipcw import censoring_survival
from engine.evaluation.target import SurvivalTarget, check_horizons, check_scores

__all__ = ["TimeAucResult", "cumulative_dynamic_auc"]


class TimeAucResult(NamedTuple):
    """AUROC per horizon, arrays shape (k,): ``times`` (years), estimate and interval.

    ``cases``: fractures by ``t``; ``controls``: still followed beyond ``t``.
    """

    times: np.ndarray
    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    se: np.ndarray
    method: str
    n: int
    events: int
    cases: np.ndarray
    controls: np.ndarray


def cumulative_dynamic_auc(
    target: SurvivalTarget,
    risk: object,
    times: object,
    *,
    train: SurvivalTarget | None = None,
    ci: str = "auto",
    n_boot: int = bs.N_BOOT,
    bootstrap_max_n: int = bs.BOOTSTRAP_MAX_N,
    alpha: float = 0.05,
    seed: int = 0,
) -> TimeAucResult:
    """Cumulative/dynamic AUROC of ``risk`` at each horizon of ``times``.

    Parameters
    ----------
    target : SurvivalTarget
    risk : array_like, shape (n,) or (n, k)
        Risk score (higher = higher risk), one column per horizon or one for all
        (e.g. the predicted probability of fracture by ``t``).
    times : array_like, shape (k,)
        Horizons in years, increasing.
    train : SurvivalTarget, optional
        Data for the censoring distribution (default: ``target``).
    ci, n_boot, bootstrap_max_n, alpha, seed
        As in ``concordance.harrell_c`` (weights held fixed under resampling).

    Returns
    -------
    TimeAucResult
    """
    t = check_horizons(times)
    r = np.asarray(risk, dtype=float)
    cols = (
        [check_scores(r, target.n, "risk")] * t.size
        if r.ndim == 1
        else [check_scores(r[:, j], target.n, f"risk[:, {j}]") for j in range(r.shape[1])]
    )
    if len(cols) != t.size:
        from engine.errors import VfriskError

        raise VfriskError("bad_argument", f"risk has {len(cols)} columns for {t.size} horizons")
    g = censoring_survival(train if train is not None else target, competing_as_censoring=True)
    ipcw = np.zeros(target.n)
    ev = target.fracture
    g_at = g.at(target.time[ev])
    ipcw[ev] = np.divide(1.0, g_at, out=np.zeros_like(g_at), where=g_at > 0)
    method = bs.choose_method(ci, target.n, bootstrap_max_n)
    w = bs.bootstrap_weights(target.n, n_boot, seed) if method == "bootstrap" else None
    out = np.full((4, t.size), np.nan)
    n_case, n_ctrl = np.zeros(t.size, int), np.zeros(t.size, int)
    for j, (h, s) in enumerate(zip(t, cols, strict=True)):
        case_w = np.where(ev & (target.time <= h), ipcw, 0.0)
        ctrl_w = (target.time > h).astype(float)
        n_case[j], n_ctrl[j] = int((case_w > 0).sum()), int(ctrl_w.sum())
        sums = auc_sums(s, case_w, ctrl_w)
        if sums.total <= 0:
            continue
        est = sums.num.sum() / 2 / sums.total
        if method == "bootstrap":
            credit = np.where(
                s[:, None] > s[None, :], 1.0, np.where(s[:, None] == s[None, :], 0.5, 0.0)
            )
            c = case_w[:, None] * ctrl_w[None, :]
            iv = bs.percentile_interval(bs.quadratic_ratio(w, c * credit, c), alpha)
        elif method == "influence":
            se = np.sqrt(np.sum((sums.num - est * sums.den) ** 2)) / sums.total
            iv = bs.normal_interval(est, se, alpha)
        else:
            iv = bs.Interval(np.nan, np.nan, np.nan, "none")
        out[:, j] = (est, iv.ci_low, iv.ci_high, iv.se)
    return TimeAucResult(t, *out, method, target.n, target.n_events, n_case, n_ctrl)
