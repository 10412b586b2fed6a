"""The study's comparators: what the deep model has to beat (Kong et al. 2025; issue 6).

Every comparator turns one row per patient (the frame of
:func:`engine.store.experiment_tables.comparator_frame`) into a risk score, higher =
higher risk, NaN where it cannot be computed; the fitted ones also give P(fracture by
year t), t = 1..T. Models are fitted on the development site only and scored on every
patient of every site, so the external sites stay unseen.

* ``frax_mof``, ``frax_hip``: the 10-year FRAX probabilities as the clinical table gives
  them (FRAX is a closed calculator; REFERENCE.md). Ranks only: a 10-year probability is
  not a 1..5-year risk, so no risk curve.
* ``l1_hu_le110``, ``l1_hu_le160``: L1 trabecular attenuation at or below 110 / 160 HU,
  1 or 0, as a radiologist applies the cut-offs (Pickhardt et al., Ann Intern Med 2013:
  160 HU ~90 % sensitive, 110 HU > 90 % specific for osteoporosis). ``l1_hu``: the
  continuous ``-HU`` (lower density = higher risk), as ``vfrisk report`` scores it.
* ``cox_clinical``: a Cox model on the clinical risk factors of the clinical table (age,
  sex, BMI, prior fracture, parent hip fracture, smoking, glucocorticoids, rheumatoid
  arthritis, secondary osteoporosis, alcohol), the predecessor paper's clinical model.
* ``cox_biomarkers``: a Cox model on vfrisk's own biomarkers of the index scan (T12-L4
  mean and L1 trabecular HU, L3 muscle area and density, the L3 muscle index, highest
  estimated Genant grade).
* ``cox_combined``: the clinical factors plus the image model's 5-year risk as a logit.

Cox models are lifelines' ``CoxPHFitter`` (Breslow baseline, Efron ties) with a small
ridge penalty on the standardised coefficients (``penalizer``) that keeps collinear
biomarkers (mean and L1 HU) and rare binary factors finite. Competing death (event 2) is
censored: the models are cause-specific hazards of vertebral fracture, and ``1 - S(t)``
is the risk of fracture by ``t`` were death removed, which overstates the cumulative
incidence where deaths are frequent (the rankings that the c-index and td-AUC judge are
what matter here). Missing values: complete cases, no imputation. A patient missing any
covariate of a model is left out of its fit and gets NaN from it; the evaluation
compares scores on the patients that have both, and counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import VfriskError

__all__ = [
    "BIOMARKER_COVARIATES",
    "CLINICAL_COVARIATES",
    "COMPARATOR_LABELS",
    "IMAGE_COVARIATE",
    "ComparatorScore",
    "ComparatorSet",
    "CoxFit",
    "CoxSettings",
    "fit_comparators",
    "fit_cox",
    "frax_scores",
    "image_logit",
    "l1_scores",
]

#: Covariates of the clinical Cox model (``female`` = 1 for sex "F", 0 for "M").
CLINICAL_COVARIATES = (
    "age", "female", "bmi", "prior_fracture", "parent_hip_fracture", "current_smoking",
    "glucocorticoids", "rheumatoid_arthritis", "secondary_osteoporosis", "alcohol_3plus",
)  # fmt: skip
#: Covariates of the biomarker Cox model (columns of ``comparator_frame``).
BIOMARKER_COVARIATES = (
    "mean_trabecular_hu", "l1_trabecular_hu", "l3_muscle_area_cm2", "l3_muscle_hu",
    "smi_cm2_m2", "max_genant_grade",
)  # fmt: skip
#: The image model's 5-year risk as a logit, beside the clinical factors in ``cox_combined``.
IMAGE_COVARIATE = "image_logit"

#: Human names of the comparators, in the order tables show them.
COMPARATOR_LABELS = {
    "frax_mof": "FRAX MOF (given)",
    "frax_hip": "FRAX hip (given)",
    "cox_clinical": "Clinical Cox",
    "l1_hu_le110": "L1 HU <= 110",
    "l1_hu_le160": "L1 HU <= 160",
    "l1_hu": "L1 HU (continuous)",
    "cox_biomarkers": "Biomarker Cox",
    "cox_combined": "Image + clinical Cox",
}


@dataclass(frozen=True)
class CoxSettings:
    """How the comparators are fitted (``[experiments]`` of the configuration).

    Attributes
    ----------
    penalizer : float
        Ridge penalty of lifelines' ``CoxPHFitter`` on standardised coefficients.
    min_events : int
        Fewest fractures among the complete cases of the development site for a Cox fit.
    l1_cutoffs_hu : tuple of float
        L1 trabecular HU cut-offs of the threshold comparators (at or below = positive).
    max_followup : int
        Years of the risk curve: P(fracture by year t), t = 1..max_followup.
    """

    penalizer: float = 0.01
    min_events: int = 10
    l1_cutoffs_hu: tuple[float, ...] = (110.0, 160.0)
    max_followup: int = 5

    @classmethod
    def from_config(cls, config: Any, max_followup: int = 5) -> CoxSettings:
        """From ``[experiments]`` of a :class:`engine.config.Config` (or a mapping)."""
        exp = config["experiments"]
        return cls(
            penalizer=float(exp["cox_penalizer"]), min_events=int(exp["cox_min_events"]),
            l1_cutoffs_hu=tuple(float(c) for c in exp["l1_cutoffs_hu"]),
            max_followup=max_followup,
        )  # fmt: skip

    def __post_init__(self) -> None:
        if self.penalizer < 0 or self.min_events < 1 or self.max_followup < 1:
            raise VfriskError(
                "bad_config",
                "[experiments] cox_penalizer must be >= 0 and cox_min_events >= 1; fix the "
                "configuration file",
            )


@dataclass(frozen=True)
class ComparatorScore:
    """One comparator's output for every patient of the frame it scored.

    Attributes
    ----------
    name : str
        Key of :data:`COMPARATOR_LABELS`.
    score : numpy.ndarray, shape (n,)
        Higher = higher risk; NaN where the comparator has no value for the patient.
    risk : numpy.ndarray or None, shape (n, max_followup)
        P(fracture by year t) for fitted models; None for given or threshold scores.
    """

    name: str
    score: np.ndarray
    risk: np.ndarray | None = None

    @property
    def label(self) -> str:
        """Human name of the comparator."""
        if self.name in COMPARATOR_LABELS:
            return COMPARATOR_LABELS[self.name]
        if self.name.startswith("l1_hu_le"):
            return f"L1 HU <= {self.name.removeprefix('l1_hu_le')}"
        return self.name


@dataclass(frozen=True)
class CoxFit:
    """A Cox model fitted on complete cases of the development site.

    Attributes
    ----------
    name : str
    covariates : tuple of str
        Covariates in the model (constant ones dropped before fitting).
    dropped : tuple of str
        Covariates left out because they were constant among the complete cases.
    coefficients : dict of str to float
        Log hazard ratio per unit of each covariate.
    n, events : int
        Complete cases and fractures the fit used.
    fitter : lifelines.CoxPHFitter
    """

    name: str
    covariates: tuple[str, ...]
    dropped: tuple[str, ...]
    coefficients: dict[str, float]
    n: int
    events: int
    fitter: object = field(repr=False)

    def predict(self, frame: pd.DataFrame, max_followup: int) -> ComparatorScore:
        """Linear predictor and 1..max_followup-year risk of every row of ``frame``.

        Rows missing a covariate get NaN.
        """
        x = _covariates(frame)
        cols = list(self.covariates)
        ok = x[cols].notna().all(axis=1).to_numpy()
        score = np.full(len(x), np.nan)
        risk = np.full((len(x), max_followup), np.nan)
        if ok.any():
            xs = x.loc[ok, cols].astype(float)
            score[ok] = self.fitter.predict_log_partial_hazard(xs).to_numpy(dtype=float)
            surv = self.fitter.predict_survival_function(xs, times=range(1, max_followup + 1))
            risk[ok] = 1.0 - surv.to_numpy(dtype=float).T
        return ComparatorScore(self.name, score, risk)


@dataclass(frozen=True)
class ComparatorSet:
    """All comparators of one frame: scores in frame order, the Cox fits and notes."""

    scores: tuple[ComparatorScore, ...]
    fits: dict[str, CoxFit]
    notes: tuple[str, ...]

    def get(self, name: str) -> ComparatorScore | None:
        """The comparator called ``name``, or None when it was not computed."""
        return next((s for s in self.scores if s.name == name), None)


def _covariates(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    if "sex" in out:
        out["female"] = out["sex"].map({"F": 1.0, "M": 0.0})
    return out


def image_logit(risk: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``log(p / (1 - p))`` of predicted probabilities, clipped to [eps, 1 - eps]; NaN kept."""
    p = np.clip(np.asarray(risk, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))


def fit_cox(
    frame: pd.DataFrame, covariates: Sequence[str], *, name: str, settings: CoxSettings
) -> CoxFit:
    """Fit a cause-specific Cox model for vertebral fracture on the complete cases of ``frame``.

    Parameters
    ----------
    frame : pandas.DataFrame
        ``followup_years`` (years), ``event_type`` (0 censored, 1 fracture, 2 death,
        censored here) and the covariates (``female`` is derived from ``sex``).
    covariates : sequence of str
    name : str
        Comparator name, for messages.
    settings : CoxSettings

    Returns
    -------
    CoxFit

    Raises
    ------
    VfriskError
        ``comparator_not_fitted`` with fewer than ``settings.min_events`` fractures among
        the complete cases, no covariate that varies, or a fit that does not converge.
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    x = _covariates(frame)
    missing = [c for c in covariates if c not in x]
    if missing:
        raise VfriskError("comparator_not_fitted", f"{name}: no column {missing} in the data")
    cols = list(covariates)
    data = x[[*cols, "followup_years", "event_type"]].dropna().astype(float)
    data["fracture"] = (data.pop("event_type") == 1).astype(float)  # death: censored
    events = int(data["fracture"].sum())
    if events < settings.min_events:
        raise VfriskError(
            "comparator_not_fitted",
            f"{name}: {events} fractures among {len(data)} complete cases of the development "
            f"site, fewer than [experiments] cox_min_events = {settings.min_events}",
        )
    dropped = tuple(c for c in cols if data[c].nunique() < 2)
    kept = [c for c in cols if c not in dropped]
    if not kept:
        raise VfriskError("comparator_not_fitted", f"{name}: every covariate is constant")
    fitter = CoxPHFitter(penalizer=settings.penalizer)
    try:
        fitter.fit(data[[*kept, "followup_years", "fracture"]], "followup_years", "fracture")
    except (ConvergenceError, np.linalg.LinAlgError) as exc:
        raise VfriskError("comparator_not_fitted", f"{name}: the fit failed ({exc})") from None
    coefficients = {c: float(fitter.params_[c]) for c in kept}
    return CoxFit(name, tuple(kept), dropped, coefficients, len(data), events, fitter)


def frax_scores(frame: pd.DataFrame) -> list[ComparatorScore]:
    """FRAX MOF and hip 10-year probabilities (percent) as given, NaN where missing."""
    return [ComparatorScore(c, frame[c].to_numpy(dtype=float)) for c in ("frax_mof", "frax_hip")]


def l1_scores(frame: pd.DataFrame, cutoffs_hu: Sequence[float]) -> list[ComparatorScore]:
    """L1 trabecular HU cut-offs (1 = at or below) and the continuous ``-HU``.

    Parameters
    ----------
    frame : pandas.DataFrame
        Column ``l1_trabecular_hu`` (HU; NaN without a measurement).
    cutoffs_hu : sequence of float

    Returns
    -------
    list of ComparatorScore
        ``l1_hu_le<cut>`` per cut-off, then ``l1_hu``.
    """
    hu = frame["l1_trabecular_hu"].to_numpy(dtype=float)
    known = np.isfinite(hu)
    out = [
        ComparatorScore(f"l1_hu_le{cut:g}", np.where(known, (hu <= cut).astype(float), np.nan))
        for cut in cutoffs_hu
    ]
    out.append(ComparatorScore("l1_hu", -hu))
    return out


def fit_comparators(
    frame: pd.DataFrame,
    *,
    dev_sites: Sequence[str],
    settings: CoxSettings,
    combined_fit: np.ndarray | None = None,
) -> ComparatorSet:
    """Fit the Cox comparators on ``dev_sites`` and score every row of ``frame``.

    Parameters
    ----------
    frame : pandas.DataFrame
        :func:`~engine.store.experiment_tables.comparator_frame` rows; with a column
        :data:`IMAGE_COVARIATE` (the image model's 5-year risk logit) the combined model
        is fitted too.
    dev_sites : sequence of str
        Sites whose patients fit the models (the development site).
    settings : CoxSettings
    combined_fit : numpy.ndarray, optional, shape (n,), bool
        Rows that fit ``cox_combined`` (default: the development sites), e.g. the
        patients the image model did not train on.

    Returns
    -------
    ComparatorSet
        Scores in :data:`COMPARATOR_LABELS` order; a model that cannot be fitted is left
        out with a note saying why.
    """
    is_dev = frame["site"].isin(list(dev_sites)).to_numpy()
    notes: list[str] = []
    fits: dict[str, CoxFit] = {}
    models = [("cox_clinical", CLINICAL_COVARIATES), ("cox_biomarkers", BIOMARKER_COVARIATES)]
    if IMAGE_COVARIATE in frame:
        models.append(("cox_combined", (*CLINICAL_COVARIATES, IMAGE_COVARIATE)))
    else:
        notes.append("cox_combined: no image model risk to combine with the clinical factors")
    for name, covariates in models:
        rows = combined_fit if name == "cox_combined" and combined_fit is not None else is_dev
        try:
            fits[name] = fit_cox(frame[rows], covariates, name=name, settings=settings)
        except VfriskError as exc:
            notes.append(exc.message)
            continue
        if fits[name].dropped:
            notes.append(
                f"{name}: constant where fitted, left out: {', '.join(fits[name].dropped)}"
            )

    def cox(name: str) -> list[ComparatorScore]:
        return [fits[name].predict(frame, settings.max_followup)] if name in fits else []

    scores = [
        *frax_scores(frame),
        *cox("cox_clinical"),
        *l1_scores(frame, settings.l1_cutoffs_hu),
        *cox("cox_biomarkers"),
        *cox("cox_combined"),
    ]
    return ComparatorSet(tuple(scores), fits, tuple(notes))
