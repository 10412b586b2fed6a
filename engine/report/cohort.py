"""The analysis cohort of a report: one row per patient, outcomes joined to scores.

Rule (stated in every report): with a model, the cohort is the clinical patients linked
to an index scan (``clinical_links`` status 'linked') that holds a prediction of that
model; without one (no scoring yet) it is every clinical patient, since FRAX needs no
scan. Each score is then evaluated on the patients that have it (complete cases) and
each paired comparison on those with both scores; the counts are reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.errors import VfriskError
from engine.store import Store
from engine.store import report_tables as tables

__all__ = ["AnalysisCohort", "ModelInfo", "choose_model", "load_cohort"]

_FRAME_COLUMNS = (
    "patient_id",
    "site",
    "sex",
    "age",
    "prevalent_vf",
    "frax_mof",
    "frax_hip",
    "followup_years",
    "event_type",
    "p_fracture",
    "risk_1y",
    "risk_2y",
    "risk_3y",
    "risk_4y",
    "risk_5y",
    "l1_hu",
    "scan_date",
    "study_date",
)


@dataclass(frozen=True)
class ModelInfo:
    """A row of ``models``: id (checkpoint sha256 prefix), name, card and predictions."""

    model_id: str
    name: str | None
    path: str | None
    sha256: str | None
    preprocessing_version: str | None
    card: dict | None
    created_at: str | None
    n_predictions: int


@dataclass(frozen=True)
class AnalysisCohort:
    """What a report evaluates, and where it came from.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per patient of the cohort: ``patient_id, site, sex, age (years),
        prevalent_vf (0/1), frax_mof, frax_hip (10-year probability, percent),
        followup_years, event_type (0/1/2), p_fracture, risk_1y .. risk_5y (probability),
        l1_hu (HU), scan_date, study_date``; missing values are NaN/None.
    model : ModelInfo or None
        The evaluated model; None for a FRAX-only report.
    has_l1_hu : bool
        Whether L1 trabecular HU (``biomarkers``) is available as a baseline.
    db : str
        Database path.
    clinical_patients : int
        Rows of ``clinical``.
    links : dict
        ``clinical_links`` rows per status.
    linked_without_prediction : int
        Linked patients whose index scan has no prediction of the model (0 without one).
    known_models : tuple of str
        Model ids in ``models``.
    """

    frame: pd.DataFrame
    model: ModelInfo | None
    has_l1_hu: bool
    db: str
    clinical_patients: int
    links: dict[str, int]
    linked_without_prediction: int
    known_models: tuple[str, ...]

    @property
    def sites(self) -> tuple[str, ...]:
        """Sites of the cohort, sorted."""
        return tuple(sorted(self.frame["site"].dropna().unique()))

    @property
    def scan_dates(self) -> tuple[str | None, str | None]:
        """First and last scan date (index scan StudyDate, else clinical scan_date)."""
        dates = pd.to_datetime(self.frame["study_date"]).fillna(
            pd.to_datetime(self.frame["scan_date"])
        )
        dates = dates.dropna()
        if dates.empty:
            return None, None
        return str(dates.min().date()), str(dates.max().date())

    @property
    def rule(self) -> str:
        """The cohort definition in words."""
        if self.model is None:
            return "every patient of the clinical table (no model predictions: FRAX needs no scan)"
        return (
            f"clinical patients linked to an index scan that holds a prediction of model "
            f"{self.model.model_id}"
        )


def _model_info(row: pd.Series) -> ModelInfo:
    card = None
    if isinstance(row["card"], str) and row["card"]:
        try:
            card = json.loads(row["card"])
        except json.JSONDecodeError:
            card = {"text": row["card"]}

    def text(v: object) -> str | None:
        return (
            None if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)) else str(v)
        )

    return ModelInfo(
        model_id=str(row["model_id"]),
        name=text(row["name"]),
        path=text(row["path"]),
        sha256=text(row["sha256"]),
        preprocessing_version=text(row["preprocessing_version"]),
        card=card,
        created_at=text(row["created_at"]),
        n_predictions=int(row["n_predictions"]),
    )


def choose_model(models: pd.DataFrame, model_id: str | None) -> ModelInfo | None:
    """The model to evaluate: ``model_id``, else the latest one that has predictions.

    Parameters
    ----------
    models : pandas.DataFrame
        ``report_tables.models_with_predictions`` (newest first).
    model_id : str, optional
        Requested id (``--model``).

    Raises
    ------
    VfriskError
        ``model_not_found`` naming the known ids.
    """
    if model_id is None:
        scored = models[models["n_predictions"] > 0]
        return None if scored.empty else _model_info(scored.iloc[0])
    hit = models[models["model_id"] == model_id]
    if hit.empty:
        known = ", ".join(models["model_id"].astype(str)) or "none (run `vfrisk score` first)"
        raise VfriskError(
            "model_not_found",
            f"model {model_id!r} is not in the models table; known model ids: {known}. "
            "Pass one of them to --model, or leave --model out for the latest scored model",
        )
    return _model_info(hit.iloc[0])


def load_cohort(store: Store, model_id: str | None = None) -> AnalysisCohort:
    """Read the analysis cohort of a report from the database (one read batch).

    Parameters
    ----------
    store : Store
    model_id : str, optional
        ``--model``; default the latest model with predictions, or none.

    Raises
    ------
    VfriskError
        ``db_not_found``, ``no_clinical_data`` (nothing imported yet) or
        ``model_not_found``.
    """
    with store.read() as con:
        names = tables.table_names(con)
        n_clinical = (
            int(con.execute("SELECT count(*) FROM clinical").fetchone()[0])
            if "clinical" in names
            else 0
        )
        if n_clinical == 0:
            raise VfriskError(
                "no_clinical_data",
                f"{store.path} holds no clinical data, so there are no outcomes to evaluate; "
                "import the clinical table first: `vfrisk import-clinical FILE --db "
                f"{store.path}`",
            )
        if {"models", "predictions"} <= names:
            models = tables.models_with_predictions(con)
        else:  # a database last written before the report's tables existed
            models = pd.DataFrame(columns=["model_id", "n_predictions"])
        model = choose_model(models, model_id)
        has_hu = tables.has_l1_biomarker(con)
        rows = tables.analysis_rows(
            con,
            model.model_id if model and {"predictions"} <= names else None,
            with_l1_hu=has_hu,
        )
        links = tables.link_status_counts(con)
    if model is None:
        frame, without = rows, 0
    else:
        linked = rows["link_status"] == "linked"
        has = rows["has_prediction"].astype(bool)
        frame, without = rows[has], int((linked & ~has).sum())
    frame = frame.loc[:, list(_FRAME_COLUMNS)].reset_index(drop=True)
    numeric = [
        c
        for c in _FRAME_COLUMNS
        if c not in ("patient_id", "site", "sex", "scan_date", "study_date")
    ]
    frame[numeric] = frame[numeric].astype("float64")  # nullable ints: NA -> NaN
    frame["event_type"] = frame["event_type"].astype("int64")
    return AnalysisCohort(
        frame=frame,
        model=model,
        has_l1_hu=has_hu and bool(frame["l1_hu"].notna().any()),
        db=str(store.path),
        clinical_patients=n_clinical,
        links=links,
        linked_without_prediction=without,
        known_models=tuple(models["model_id"].astype(str)),
    )
