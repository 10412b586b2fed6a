"""Losses of the two heads, and the yearly survival labels (Mirai's, with one correction).

Survival labels (Yala et al. 2021, Mirai ``get_label``; Kong et al. 2025 copy it), except
that a fracture stays supervised as positive in every later year.
Follow-up ``time`` is in years from the scan; ``event`` is coded as everywhere in vfrisk
(:mod:`engine.evaluation.target`): 0 censored, 1 vertebral fracture, 2 death first.

- Year bins. Column ``t - 1`` of the output is P(fracture by year t), t = 1..T
  (``T = max_followup``). A time maps to the 0-based bin ``k = floor(time)`` (Mirai's
  ``days // 365``): an event at 0.3 or 0.99 years falls in bin 0 (year 1), at 1.0 years in
  bin 1 (year 2).
- Fracture (event 1) with ``k < T``: ``y[k:] = 1``, ``y[:k] = 0``; every bin is
  supervised. Mirai masks the bins after ``k``, arguing that the head's monotone structure
  ties them to bin k; but monotonicity only bounds them from below, while the patients
  still at risk keep pulling them down. With Mirai's mask the patients labelled in bin t
  are those fracturing in year t and those fracture-free through it, so the cumulative
  head learns the one-year hazard in every column: on the synthetic cohort the predicted
  risk stayed at the first year's (~0.05) for all five years while the observed
  cumulative incidence rose to 0.145 (calibration intercept 1.2-1.5). Supervising the
  later bins as positive makes column t an estimate of P(fracture by year t).
- Censored (event 0), or a fracture beyond the horizon (``k >= T``): all labels 0, bins
  ``0..min(k, T - 1)`` supervised, later bins masked: years after the last follow-up are
  unknown. This is Mirai's convention: the year in which follow-up ends counts as
  fracture-free even when it is only partly observed (censored at 2.5 years: years 1, 2
  and 3 supervised). ``strict_censoring=True`` supervises only fully observed years
  (censored at 2.5 years: years 1 and 2).
- Competing death (event 2) is censoring at the time of death (Mirai and the study know
  no competing risk): the years before death count as fracture-free, the years after are
  masked, so a death never counts as a fracture nor as fracture-free beyond it.

Two survival losses read these labels (``[train] survival_loss``):

- ``'likelihood'`` (default): the discrete-time survival likelihood of the cumulative
  risk ``F_t = sigmoid(logit_t)``: a fracture in bin k contributes
  ``-log(F_k - F_{k-1})`` (``F_{-1} = 0``), a patient fracture-free through their last
  supervised bin c contributes ``-log(1 - F_c)``; mean over the patients with a
  supervised bin. Censored patients count as at risk up to their censoring, as in
  Kaplan-Meier, so the head estimates P(fracture by year t) with deaths censored.
- ``'bce'``: binary cross-entropy per supervised (mask 1) cell, divided by their number
  (Mirai's ``size_average=False`` sum over ``sum(y_mask)``). With these labels it is the
  naive estimator that drops every patient censored before year t from year t's
  denominator while keeping the fractures: on the development cohort of the shipped
  weights (800 patients, 184 deaths and 96 censored within 5 years) it targets a 5-year
  risk of 0.296 where Kaplan-Meier gives 0.236 and Aalen-Johansen (deaths competing)
  0.209.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "SURVIVAL_LOSSES",
    "SurvivalLabels",
    "detection_loss",
    "survival_labels",
    "survival_loss",
]

SURVIVAL_LOSSES = ("likelihood", "bce")
#: smallest yearly increment of the cumulative logit inside the likelihood's log: a ReLU
#: hazard can be exactly 0, which would make a fracture in that year infinitely unlikely
_MIN_HAZARD = 1e-6


class SurvivalLabels(NamedTuple):
    """Yearly targets of the survival head.

    Attributes
    ----------
    y_seq : np.ndarray
        float32, shape (n, T): 1 where the patient has fractured by year t.
    mask : np.ndarray
        float32, shape (n, T): 1 where that year is supervised.
    time_bin : np.ndarray
        int64, shape (n,): the last supervised bin (-1: none); ``T - 1`` for a fracture
        within the horizon, else Mirai's ``time_at_event``.
    fracture : np.ndarray
        bool, shape (n,): fracture within the horizon.
    """

    y_seq: np.ndarray
    mask: np.ndarray
    time_bin: np.ndarray
    fracture: np.ndarray


def survival_labels(
    time: object, event: object, max_followup: int, *, strict_censoring: bool = False
) -> SurvivalLabels:
    """Yearly labels and censoring mask from ``(time, event)`` (rules in the module doc).

    Parameters
    ----------
    time : array_like, shape (n,)
        Follow-up in years (to fracture, death or last contact), finite, >= 0.
    event : array_like, shape (n,)
        0 censored, 1 fracture, 2 competing death (treated as censoring at death).
    max_followup : int
        Years T of the survival head.
    strict_censoring : bool
        False (the study): the partly observed last year of a censored patient counts as
        fracture-free. True: only years fully observed (``t <= time``) are supervised.

    Returns
    -------
    SurvivalLabels

    Raises
    ------
    ValueError
        For times that are negative or not finite, event codes outside {0, 1, 2}, or
        arrays of other shapes.
    """
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event)
    if t.ndim != 1 or e.shape != t.shape:
        raise ValueError(f"time and event must be 1-D of one length, got {t.shape}, {e.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("follow-up time must be finite and >= 0 (years)")
    if not np.all(np.isin(e, (0, 1, 2))):
        raise ValueError("event must be 0 (censored), 1 (fracture) or 2 (death)")
    n, horizon = t.size, int(max_followup)
    # a small tolerance: 2 years computed as days / 365.25 must not land in bin 1
    k = np.floor(t + 1e-9).astype(np.int64)
    fracture = (e == 1) & (k < horizon)
    # a fracture is supervised (positive from bin k on) in every bin of the horizon
    if strict_censoring:
        # censored: supervise only years t with t <= time, i.e. bins < floor(time)
        last = np.where(fracture, horizon - 1, np.minimum(k - 1, horizon - 1))
    else:
        last = np.where(fracture, horizon - 1, np.minimum(k, horizon - 1))
    bins = np.arange(horizon)
    y_seq = (fracture[:, None] & (bins[None, :] >= k[:, None])).astype(np.float32)
    mask = (bins[None, :] <= last[:, None]).astype(np.float32)
    return SurvivalLabels(
        y_seq=y_seq.reshape(n, horizon), mask=mask.reshape(n, horizon), time_bin=last,
        fracture=fracture,
    )  # fmt: skip


def survival_loss(
    risk_logit: torch.Tensor, y_seq: object, mask: object, kind: str = "likelihood"
) -> torch.Tensor:
    """The survival head's loss (``kind``: see the module doc).

    Parameters
    ----------
    risk_logit : torch.Tensor
        shape (B, T): ``MultitaskOutput.risk_logit`` (non-decreasing along T).
    y_seq, mask : array_like or torch.Tensor
        shape (B, T): from :func:`survival_labels` (each row's mask a run of ones from
        bin 0, its labels a run of ones to the last bin).
    kind : str, optional
        ``'likelihood'`` (default) or ``'bce'``.

    Returns
    -------
    torch.Tensor
        Scalar: ``'likelihood'``, the negative log-likelihood summed over the patients
        with a supervised bin and divided by their number; ``'bce'``, the BCE summed over
        cells with mask 1 and divided by their count. 0 when the batch has nothing
        supervised, keeping the graph.
    """
    import torch
    import torch.nn.functional as F

    if kind not in SURVIVAL_LOSSES:
        raise ValueError(f"survival loss {kind!r}: choose one of {SURVIVAL_LOSSES}")
    logit = risk_logit.float()
    y = torch.as_tensor(y_seq, dtype=logit.dtype, device=logit.device)
    m = torch.as_tensor(mask, dtype=logit.dtype, device=logit.device)
    if y.shape != logit.shape or m.shape != logit.shape:
        raise ValueError(f"labels {tuple(y.shape)} / mask {tuple(m.shape)} vs {logit.shape}")
    if kind == "bce":
        total = F.binary_cross_entropy_with_logits(logit, y, weight=m, reduction="sum")
        return total / torch.clamp(m.sum(), min=1.0)
    horizon = logit.shape[1]
    n_known = m.sum(dim=1)
    rows = n_known > 0
    last = torch.clamp(n_known.long() - 1, min=0)  # last supervised bin
    fractured = rows & (y.gather(1, last[:, None])[:, 0] > 0.5)
    k = torch.clamp(horizon - y.sum(dim=1).long(), 0, horizon - 1)  # fracture bin
    l_k = logit.gather(1, k[:, None])[:, 0]
    prev = torch.cat([logit.new_zeros(logit.shape[0], 1), logit[:, :-1]], dim=1)
    l_prev = prev.gather(1, k[:, None])[:, 0]
    # -log(sigmoid(a) - sigmoid(b)) = -(a + log(1 - e^(b - a)) - softplus(a) - softplus(b))
    step = torch.clamp(l_k - l_prev, min=_MIN_HAZARD)
    later = -(l_k + torch.log(-torch.expm1(-step)) - F.softplus(l_k) - F.softplus(l_prev))
    nll_event = torch.where(k == 0, F.softplus(-l_k), later)
    nll_free = F.softplus(logit.gather(1, last[:, None])[:, 0])  # -log(1 - F_last)
    nll = torch.where(fractured, nll_event, nll_free)
    zero = torch.zeros_like(nll)
    return torch.where(rows, nll, zero).sum() / torch.clamp(rows.sum(), min=1).to(nll.dtype)


def detection_loss(
    fracture_logit: torch.Tensor, label: object, *, pos_weight: float | None = None
) -> torch.Tensor:
    """Binary cross-entropy of the prevalent-fracture logit, mean over the batch.

    Parameters
    ----------
    fracture_logit : torch.Tensor
        shape (B,): ``MultitaskOutput.fracture_logit``.
    label : array_like or torch.Tensor
        shape (B,): 1 prevalent fracture, 0 none.
    pos_weight : float, optional
        Weight of the positive term (class imbalance); None = 1.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    import torch
    import torch.nn.functional as F

    logit = fracture_logit.float()
    y = torch.as_tensor(label, dtype=logit.dtype, device=logit.device)
    if y.shape != logit.shape:
        raise ValueError(f"labels {tuple(y.shape)} vs logits {tuple(logit.shape)}")
    pw = None if pos_weight is None else torch.tensor(pos_weight, device=logit.device)
    return F.binary_cross_entropy_with_logits(logit, y, pos_weight=pw)
