"""Recalibrating the survival head's risk on the development site's validation patients.

The epoch kept for its validation c-index is, on a few hundred patients, an
over-confident one: the shipped weights of 2026-11-27 had a 5-year calibration slope of
0.72 at the development site and 0.77 externally (ideal 1). Ranking is what the network
learns well; the spread of its risks is not. The trainer therefore fits, after choosing
the epoch, a proportional hazards recalibration of the cumulative risk on the validation
patients (:func:`engine.evaluation.calibration.recalibration_fit`, the fit whose slope
the card reports) and stores ``(a, b)`` in the survival head
(:class:`models.heads.CumulativeProbabilityLayer`), so every scoring path applies it.

Reporting the calibration of the very patients the fit used would show a slope of 1 by
construction. The card's internal calibration is therefore **cross-fitted**: the
validation patients are dealt into parts (stratified like the training split,
:func:`cross_fitted`) and each part is recalibrated by a fit on the other parts
(Steyerberg, Clinical Prediction Models, 2019, ch. 15 and 17).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from engine.errors import VfriskError
from engine.evaluation import SurvivalTarget, recalibration_fit
from models.data import Example
from models.heads import recalibrated_risk
from models.inference import Prediction

__all__ = ["Recalibration", "apply", "cross_fitted", "fit"]


class Recalibration(NamedTuple):
    """``risk = 1 - exp(-exp(intercept) * H^slope)`` with ``H = -log(1 - risk)``."""

    intercept: float
    slope: float


def fit(
    examples: Sequence[Example], predictions: Sequence[Prediction], horizon: int
) -> Recalibration:
    """The recalibration of ``predictions``' risk by ``horizon`` years.

    Parameters
    ----------
    examples : sequence of Example
        Follow-up and events of the patients (aligned with ``predictions``).
    predictions : sequence of Prediction
        With ``risk`` (a survival head).
    horizon : int
        Year whose risk is fitted (the card's 5 years); the same ``(a, b)`` applies to
        every year.

    Raises
    ------
    VfriskError
        ``recalibration_failed``: no fracture by ``horizon`` among these patients, the
        fit did not converge, or its slope is not positive (a network whose ranking is
        no better than chance there; recalibrating would reverse it).
    """
    risk = [p.risk[horizon - 1] for p in predictions]  # type: ignore[index]
    try:
        target = SurvivalTarget.from_arrays(
            [e.followup_years for e in examples], [e.event for e in examples]
        )
        a, b = recalibration_fit(target, risk, float(horizon))
    except (VfriskError, np.linalg.LinAlgError) as exc:
        raise VfriskError(
            "recalibration_failed",
            f"the {horizon}-year risk of {len(examples)} validation patients cannot be "
            f"recalibrated: {exc}",
        ) from None
    if not (np.isfinite(a) and np.isfinite(b) and b > 0):
        raise VfriskError(
            "recalibration_failed",
            f"the recalibration slope of the {horizon}-year risk on {len(examples)} "
            f"validation patients is {b:.3g}: the risk does not rank them; left uncalibrated",
        )
    return Recalibration(a, b)


def apply(predictions: Sequence[Prediction], recalibration: Recalibration) -> list[Prediction]:
    """``predictions`` with every year's risk recalibrated (the head's own formula)."""
    risk = torch.tensor([p.risk for p in predictions], dtype=torch.float64)  # type: ignore[misc]
    hazard = -torch.log1p(-risk.clamp(max=1 - 1e-12))
    new = recalibrated_risk(hazard, torch.tensor(recalibration, dtype=torch.float64))
    return [
        dataclasses.replace(p, risk=tuple(r))
        for p, r in zip(predictions, new.tolist(), strict=True)
    ]


def cross_fitted(
    examples: Sequence[Example],
    predictions: Sequence[Prediction],
    horizon: int,
    parts: Sequence[np.ndarray],
) -> list[Prediction]:
    """Each of ``parts`` (index arrays covering every patient once) recalibrated by the fit
    on the other parts (module doc); the trainer deals them like its folds
    (:func:`models.train.split_indices`).

    Raises
    ------
    VfriskError
        ``recalibration_failed`` when a part's complement cannot be fitted.
    """
    out: list[Prediction | None] = [None] * len(examples)
    for here in parts:
        rest = np.setdiff1d(np.arange(len(examples)), here)
        r = fit([examples[i] for i in rest], [predictions[i] for i in rest], horizon)
        for i, p in zip(here, apply([predictions[i] for i in here], r), strict=True):
            out[i] = p
    if any(p is None for p in out):
        raise ValueError("parts must cover every patient")
    return out  # type: ignore[return-value]
