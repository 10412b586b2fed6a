"""O(n log n) weighted pair counting for concordance-type statistics (private).

Written by hand because neither library scales: scikit-survival's
``concordance_index_censored`` builds a mask per event (O(n^2)), and lifelines'
``concordance_index`` walks a Python B-tree and returns only totals, while the influence
function standard errors need each patient's own pair counts.

Problem. Points carry a position order (time order, ties resolved by a code, see
:func:`concordance_counts`) and an integer rank (dense rank of the risk score). Each
point may be a *row* (weight ``rw``) and/or a *column* (weight ``cw``). For every row
``p`` we want the column weight after ``p`` with a lower, equal and higher rank; for every
column ``q`` the row weight before ``q`` with a higher, equal and lower rank. This is 2-D
dominance counting; it is solved here by a wavelet-tree sweep over the bits of the rank,
most significant first: within each group of points sharing the higher bits (kept in
position order) a point with bit 1 dominates every later point with bit 0, which a
cumulative sum counts; a stable partition then splits each group by the bit. Each of the
``log2(#ranks)`` levels is a handful of vectorized O(n) numpy passes, so the whole is
O(n log n) with no Python loop over patients.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "AucSums",
    "PairCounts",
    "auc_sums",
    "concordance_counts",
    "dense_rank",
    "dominance_counts",
]


class _Dominance(NamedTuple):
    row_lower: np.ndarray
    row_equal: np.ndarray
    row_higher: np.ndarray
    col_higher: np.ndarray
    col_equal: np.ndarray
    col_lower: np.ndarray


def dominance_counts(rank: np.ndarray, rw: np.ndarray, cw: np.ndarray) -> _Dominance:
    """Weighted dominance counts of points already in position order.

    Parameters
    ----------
    rank : numpy.ndarray, shape (m,), int64
        Dense rank (>= 0) of each point's score.
    rw, cw : numpy.ndarray, shape (m,), float64
        Row and column weight of each point (0 where the point is not a row/column).

    Returns
    -------
    _Dominance
        ``row_lower[p] = sum(cw[q] for q > p if rank[q] < rank[p])`` and likewise
        ``row_equal``, ``row_higher``; ``col_higher[q] = sum(rw[p] for p < q if
        rank[p] > rank[q])`` and likewise ``col_equal``, ``col_lower``; all shape (m,).
    """
    m = rank.size
    out = [np.zeros(m) for _ in range(6)]
    if m == 0:
        return _Dominance(*out)
    nbits = max(1, int(rank.max()).bit_length())
    cur = np.arange(m)  # current order: by (rank prefix, position)
    gs = np.zeros(m, dtype=np.int64)  # start of each element's group, in current order
    ge = np.full(m, m, dtype=np.int64)  # end (exclusive)
    x = np.arange(m)
    r_cur, rw_cur, cw_cur = rank.copy(), rw.copy(), cw.copy()
    for k in range(nbits - 1, -1, -1):
        one = ((r_cur >> k) & 1).astype(bool)
        zero = ~one
        c0 = np.concatenate(([0.0], np.cumsum(np.where(zero, cw_cur, 0.0))))
        c1 = np.concatenate(([0.0], np.cumsum(np.where(one, cw_cur, 0.0))))
        r0 = np.concatenate(([0.0], np.cumsum(np.where(zero, rw_cur, 0.0))))
        r1 = np.concatenate(([0.0], np.cumsum(np.where(one, rw_cur, 0.0))))
        # later columns in the group with the other bit
        lower_after = np.where(one, c0[ge] - c0[x + 1], 0.0)
        higher_after = np.where(zero, c1[ge] - c1[x + 1], 0.0)
        # earlier rows in the group with the other bit
        higher_before = np.where(zero, r1[x] - r1[gs], 0.0)
        lower_before = np.where(one, r0[x] - r0[gs], 0.0)
        out[0][cur] += lower_after
        out[2][cur] += higher_after
        out[3][cur] += higher_before
        out[5][cur] += lower_before
        # stable partition of every group: zeros first
        cz = np.concatenate(([0], np.cumsum(zero)))
        zeros_before = cz[x] - cz[gs]
        n_zero = cz[ge] - cz[gs]
        new_idx = np.where(zero, gs + zeros_before, gs + n_zero + (x - gs) - zeros_before)
        new_gs = np.where(zero, gs, gs + n_zero)
        new_ge = np.where(zero, gs + n_zero, ge)
        nxt = np.empty_like(cur)
        nxt[new_idx] = cur
        gs_n = np.empty_like(gs)
        gs_n[new_idx] = new_gs
        ge_n = np.empty_like(ge)
        ge_n[new_idx] = new_ge
        cur, gs, ge = nxt, gs_n, ge_n
        r_cur, rw_cur, cw_cur = rank[cur], rw[cur], cw[cur]
    # groups now hold equal ranks, in position order
    cc = np.concatenate(([0.0], np.cumsum(cw_cur)))
    rc = np.concatenate(([0.0], np.cumsum(rw_cur)))
    out[1][cur] = cc[ge] - cc[x + 1]
    out[4][cur] = rc[x] - rc[gs]
    return _Dominance(*out)


class PairCounts(NamedTuple):
    """Per-patient weighted counts of comparable pairs, each shape (n,).

    ``concordant[k]``, ``tied[k]``, ``discordant[k]`` and ``comparable[k]`` sum the pair
    weights of all comparable pairs patient ``k`` takes part in (as the earlier event or
    as the later patient). Each pair appears in two patients' counts, so totals are
    ``x.sum() / 2``.
    """

    concordant: np.ndarray
    tied: np.ndarray
    discordant: np.ndarray
    comparable: np.ndarray


def dense_rank(score: np.ndarray) -> np.ndarray:
    """Dense rank of ``score``, shape (n,), int64; equal scores share a rank."""
    return np.unique(score, return_inverse=True)[1].astype(np.int64).ravel()


def concordance_counts(
    time: np.ndarray,
    is_event: np.ndarray,
    score: np.ndarray,
    row_weight: np.ndarray | None = None,
    patient_weight: np.ndarray | None = None,
) -> PairCounts:
    """Weighted counts of comparable pairs in Harrell's definition, per patient.

    A pair ``(i, j)`` is comparable when ``i`` had the event and ``T_j > T_i``, or
    ``T_j == T_i`` and ``j`` had no event (tied event times are not comparable): the rule of
    ``sksurv.metrics.concordance_index_censored`` and ``lifelines.utils.concordance_index``.
    It is concordant when ``score_i > score_j`` and tied when the scores are equal.
    The pair weight is ``row_weight[i] * patient_weight[i] * patient_weight[j]``.

    Parameters
    ----------
    time : numpy.ndarray, shape (n,), years
    is_event : numpy.ndarray, shape (n,), bool
    score : numpy.ndarray, shape (n,), higher = higher risk
    row_weight : numpy.ndarray, shape (n,), optional
        Weight of ``i`` as the earlier event (Uno's ``1 / G(T_i)^2``); default 1.
    patient_weight : numpy.ndarray, shape (n,), optional
        Frequency weight of each patient (bootstrap multiplicities); default 1.
    """
    n = time.size
    pw = np.ones(n) if patient_weight is None else np.asarray(patient_weight, dtype=float)
    rwt = pw.copy() if row_weight is None else pw * row_weight
    ev = np.flatnonzero(is_event)
    rank = dense_rank(score)
    # Points: every patient as a column keyed (T, 0 if event else 2); every event also as a
    # row keyed (T, 1). "Column after row" is then exactly Harrell's comparable rule.
    key_t = np.concatenate((time, time[ev]))
    key_c = np.concatenate((np.where(is_event, 0, 2), np.ones(ev.size, dtype=np.int64)))
    owner = np.concatenate((np.arange(n), ev))
    order = np.lexsort((key_c, key_t))
    is_row = np.concatenate((np.zeros(n, dtype=bool), np.ones(ev.size, dtype=bool)))[order]
    own = owner[order]
    rw = np.where(is_row, rwt[own], 0.0)
    cw = np.where(is_row, 0.0, pw[own])
    d = dominance_counts(rank[own], rw, cw)
    # row p's counts are weighted by its own row weight; column q's already are (rw)
    rscale = np.where(is_row, rwt[own], 0.0)
    cscale = np.where(is_row, 0.0, pw[own])
    conc = d.row_lower * rscale + d.col_higher * cscale
    tied = d.row_equal * rscale + d.col_equal * cscale
    disc = d.row_higher * rscale + d.col_lower * cscale
    per = [np.bincount(own, weights=a, minlength=n) for a in (conc, tied, disc)]
    return PairCounts(per[0], per[1], per[2], per[0] + per[1] + per[2])


class AucSums(NamedTuple):
    """Per-patient sums of a weighted two-sample (case vs control) kernel, shape (n,).

    ``num[k]`` sums ``w_i w_j (1[s_i > s_j] + 1/2 1[s_i == s_j])`` over the case-control
    pairs patient ``k`` is in, ``den[k]`` sums ``w_i w_j``; ``total`` is the pair-weight sum
    (each pair once), so the AUC is ``num.sum() / 2 / total``.
    """

    num: np.ndarray
    den: np.ndarray
    total: float


def auc_sums(score: np.ndarray, case_weight: np.ndarray, control_weight: np.ndarray) -> AucSums:
    """Weighted Mann-Whitney pair sums in O(n log n) by sorting the controls.

    Parameters
    ----------
    score : numpy.ndarray, shape (n,)
    case_weight, control_weight : numpy.ndarray, shape (n,)
        Weight of each patient as a case / as a control (0 = not one); disjoint supports.
    """
    n = score.size
    cases = np.flatnonzero(case_weight > 0)
    ctrls = np.flatnonzero(control_weight > 0)
    num = np.zeros(n)
    den = np.zeros(n)
    if cases.size == 0 or ctrls.size == 0:
        return AucSums(num, den, 0.0)
    o = np.argsort(score[ctrls], kind="stable")
    cs = score[ctrls][o]
    cw = np.concatenate(([0.0], np.cumsum(control_weight[ctrls][o])))
    lo = np.searchsorted(cs, score[cases], side="left")
    hi = np.searchsorted(cs, score[cases], side="right")
    wi = case_weight[cases]
    num[cases] = wi * (cw[lo] + 0.5 * (cw[hi] - cw[lo]))
    den[cases] = wi * cw[-1]
    o = np.argsort(score[cases], kind="stable")
    ks = score[cases][o]
    kw = np.concatenate(([0.0], np.cumsum(wi[o])))
    lo = np.searchsorted(ks, score[ctrls], side="left")
    hi = np.searchsorted(ks, score[ctrls], side="right")
    wj = control_weight[ctrls]
    num[ctrls] = wj * (kw[-1] - kw[hi] + 0.5 * (kw[hi] - kw[lo]))
    den[ctrls] = wj * kw[-1]
    return AucSums(num, den, float(wi.sum() * wj.sum()))
