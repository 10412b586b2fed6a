"""Harrell's and Uno's concordance index, their confidence intervals and paired comparison.

Definitions (competing deaths, code 2, are treated as censored in both, the standard
definition of a cause-specific c-index):

* **Harrell** (Harrell et al., Stat Med 1996;15:361-387): over pairs ``(i, j)`` with ``i`` a
  fracture and ``T_i < T_j`` (or ``T_i == T_j`` with ``j`` not a fracture), the share with
  ``score_i > score_j``, ties in score counting 1/2. Same rule and result as
  ``sksurv.metrics.concordance_index_censored`` and ``lifelines.utils.concordance_index``
  (which expects ``-score``). Scores tie only when exactly equal (scikit-survival's
  ``tied_tol=1e-8`` is not emulated).
* **Uno** (Uno et al., Stat Med 2011;30:1105-1117): the same pairs, each weighted by
  ``1 / G(T_i)^2`` with ``G`` the Kaplan-Meier censoring survival (fractures end follow-up,
  everything else censors), and only ``T_i < tau``; as
  ``sksurv.metrics.concordance_index_ipcw``.

Both are computed with the O(n log n) pair counter of ``_pairs`` (scikit-survival is
O(n^2)); confidence intervals as described in ``bootstrap``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from engine.errors import VfriskError
from engine.evaluation import bootstrap as bs
from engine.evaluation._pairs import concordance_counts
from engine.evaluation.ipcw import censoring_survival
from engine.evaluation.target import SurvivalTarget, check_scores

__all__ = ["ConcordanceResult", "PairedComparison", "compare_concordance", "harrell_c", "uno_c"]


class ConcordanceResult(NamedTuple):
    """A c-index with its interval.

    ``concordant``, ``discordant``, ``tied_risk`` and ``comparable`` are (weighted) pair
    totals; ``method`` is "bootstrap", "influence" or "none" (then CI and se are NaN).
    """

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    method: str
    n: int
    events: int
    concordant: float
    discordant: float
    tied_risk: float
    comparable: float


class PairedComparison(NamedTuple):
    """Score ``a`` vs score ``b`` on the same patients: ``difference = estimate_a - estimate_b``.

    ``ci_low``/``ci_high`` bound the difference; ``p_value`` is two-sided for no difference.
    """

    estimate_a: float
    estimate_b: float
    difference: float
    ci_low: float
    ci_high: float
    se: float
    p_value: float
    method: str
    n: int
    events: int


def _uno_row_weight(
    target: SurvivalTarget, tau: float | None, train: SurvivalTarget | None
) -> np.ndarray:
    g = censoring_survival(train if train is not None else target, competing_as_censoring=True)
    ev = target.fracture & (target.time < tau if tau is not None else True)
    g_at = g.at(target.time[ev])
    if (g_at <= 0).any():
        raise VfriskError(
            "bad_argument",
            "the censoring survival reaches 0 before the last fracture; set tau (years) to a "
            "horizon with follow-up left, e.g. the 90th percentile of follow-up",
        )
    w = np.zeros(target.n)
    w[ev] = 1.0 / g_at**2
    return w


def _pair_matrices(
    target: SurvivalTarget, scores: list[np.ndarray], row_weight: np.ndarray | None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Dense kernels ``h_ij`` (one per score) and ``c_ij``, shape (n, n); small n only."""
    t, ev = target.time, target.fracture
    comp = ev[:, None] & ((t[None, :] > t[:, None]) | ((t[None, :] == t[:, None]) & ~ev[None, :]))
    c = comp * (1.0 if row_weight is None else row_weight[:, None])
    hs = []
    for s in scores:
        credit = np.where(
            s[:, None] > s[None, :], 1.0, np.where(s[:, None] == s[None, :], 0.5, 0.0)
        )
        hs.append(c * credit)
    return hs, c


def _counts(target: SurvivalTarget, score: np.ndarray, row_weight: np.ndarray | None):
    pc = concordance_counts(target.time, target.fracture, score, row_weight=row_weight)
    num_k = pc.concordant + 0.5 * pc.tied
    return pc, num_k


def _concordance(
    target: SurvivalTarget,
    score: object,
    row_weight: np.ndarray | None,
    ci: str,
    n_boot: int,
    bootstrap_max_n: int,
    alpha: float,
    seed: int,
) -> ConcordanceResult:
    s = check_scores(score, target.n)
    pc, num_k = _counts(target, s, row_weight)
    den = pc.comparable.sum() / 2
    if den <= 0:
        raise VfriskError(
            "bad_argument", "no comparable pair of patients; the c-index is undefined"
        )
    est = float(num_k.sum() / 2 / den)
    method = bs.choose_method(ci, target.n, bootstrap_max_n)
    if method == "bootstrap":
        (h,), c = _pair_matrices(target, [s], row_weight)
        w = bs.bootstrap_weights(target.n, n_boot, seed)
        iv = bs.percentile_interval(bs.quadratic_ratio(w, h, c), alpha)
    elif method == "influence":
        # per-patient sums count each pair in both its patients; den counts it once
        se = float(np.sqrt(np.sum((num_k - est * pc.comparable) ** 2)) / den)
        iv = bs.normal_interval(est, se, alpha)
    else:
        iv = bs.Interval(np.nan, np.nan, np.nan, "none")
    return ConcordanceResult(
        est,
        iv.ci_low,
        iv.ci_high,
        iv.se,
        iv.method,
        target.n,
        target.n_events,
        float(pc.concordant.sum() / 2),
        float(pc.discordant.sum() / 2),
        float(pc.tied.sum() / 2),
        float(den),
    )


def harrell_c(
    target: SurvivalTarget,
    score: object,
    *,
    ci: str = "auto",
    n_boot: int = bs.N_BOOT,
    bootstrap_max_n: int = bs.BOOTSTRAP_MAX_N,
    alpha: float = 0.05,
    seed: int = 0,
) -> ConcordanceResult:
    """Harrell's c-index of ``score`` for fracture, O(n log n).

    Parameters
    ----------
    target : SurvivalTarget
        Follow-up (years) and event type; deaths (2) count as censored.
    score : array_like, shape (n,)
        Risk score, higher = higher risk.
    ci : {"auto", "bootstrap", "influence", "none"}
        "auto": bootstrap for n <= ``bootstrap_max_n``, else influence function.
    n_boot : int
        Bootstrap resamples.
    bootstrap_max_n : int
        Largest n bootstrapped under "auto" (the bootstrap holds n x n pair matrices).
    alpha : float
        1 - confidence level.
    seed : int
        Seed of the bootstrap resampling.

    Returns
    -------
    ConcordanceResult
    """
    return _concordance(target, score, None, ci, n_boot, bootstrap_max_n, alpha, seed)


def uno_c(
    target: SurvivalTarget,
    score: object,
    *,
    tau: float | None = None,
    train: SurvivalTarget | None = None,
    ci: str = "auto",
    n_boot: int = bs.N_BOOT,
    bootstrap_max_n: int = bs.BOOTSTRAP_MAX_N,
    alpha: float = 0.05,
    seed: int = 0,
) -> ConcordanceResult:
    """Uno's IPCW c-index of ``score`` truncated at ``tau`` years.

    Parameters
    ----------
    target : SurvivalTarget
    score : array_like, shape (n,)
        Risk score, higher = higher risk.
    tau : float, optional
        Truncation time in years; only fractures before ``tau`` start a pair.
    train : SurvivalTarget, optional
        Data for the censoring distribution ``G`` (default: ``target`` itself).
    ci, n_boot, bootstrap_max_n, alpha, seed
        As in :func:`harrell_c`; the weights ``1/G^2`` are held fixed under resampling.

    Returns
    -------
    ConcordanceResult
        Pair totals are IPCW-weighted.
    """
    w = _uno_row_weight(target, tau, train)
    return _concordance(target, score, w, ci, n_boot, bootstrap_max_n, alpha, seed)


def compare_concordance(
    target: SurvivalTarget,
    score_a: object,
    score_b: object,
    *,
    kind: str = "harrell",
    tau: float | None = None,
    ci: str = "auto",
    n_boot: int = bs.N_BOOT,
    bootstrap_max_n: int = bs.BOOTSTRAP_MAX_N,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedComparison:
    """Paired comparison of two c-indices on the same patients (model vs FRAX, model vs model).

    Parameters
    ----------
    target : SurvivalTarget
    score_a, score_b : array_like, shape (n,)
        Two risk scores, higher = higher risk.
    kind : {"harrell", "uno"}
    tau : float, optional
        Uno truncation time in years.
    ci, n_boot, bootstrap_max_n, alpha, seed
        As in :func:`harrell_c`. Bootstrap: both c-indices on the same resamples,
        percentile interval of the difference, Wald p-value from its bootstrap se.
        Influence: the difference of the two influence functions (same comparable pairs).

    Returns
    -------
    PairedComparison
    """
    if kind not in ("harrell", "uno"):
        raise VfriskError("bad_argument", f"kind must be 'harrell' or 'uno', got {kind!r}")
    a = check_scores(score_a, target.n, "score_a")
    b = check_scores(score_b, target.n, "score_b")
    rw = _uno_row_weight(target, tau, None) if kind == "uno" else None
    pa, na = _counts(target, a, rw)
    _, nb = _counts(target, b, rw)
    den = pa.comparable.sum() / 2
    if den <= 0:
        raise VfriskError(
            "bad_argument", "no comparable pair of patients; the c-index is undefined"
        )
    ca, cb = float(na.sum() / 2 / den), float(nb.sum() / 2 / den)
    diff = ca - cb
    method = bs.choose_method(ci, target.n, bootstrap_max_n)
    if method == "bootstrap":
        (ha, hb), c = _pair_matrices(target, [a, b], rw)
        w = bs.bootstrap_weights(target.n, n_boot, seed)
        d = bs.quadratic_ratio(w, ha, c) - bs.quadratic_ratio(w, hb, c)
        iv = bs.percentile_interval(d, alpha)
    elif method == "influence":
        se = float(np.sqrt(np.sum((na - nb - diff * pa.comparable) ** 2)) / den)
        iv = bs.normal_interval(diff, se, alpha)
    else:
        iv = bs.Interval(np.nan, np.nan, np.nan, "none")
    return PairedComparison(
        ca,
        cb,
        diff,
        iv.ci_low,
        iv.ci_high,
        iv.se,
        bs.wald_p_value(diff, iv.se) if method != "none" else np.nan,
        iv.method,
        target.n,
        target.n_events,
    )
