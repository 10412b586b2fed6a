"""Ad hoc scoring of one scan's files: the dashboard's "Score a scan".

The same path as ``vfrisk score`` (``load_volume`` -> :func:`engine.prepare.prepare_volume`
-> :func:`engine.score.model.score_prepared`), so a series gets the same risk here as in
the database; nothing is written to any database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.anatomy import PreprocessingSettings
from engine.config import Config
from engine.errors import VfriskError
from engine.load import load_volume
from engine.prepare import PreparedSeries, PrepareFailure, prepare_volume
from engine.score.model import LoadedModel, load_model

__all__ = ["AdhocResult", "score_paths"]


@dataclass(frozen=True)
class AdhocResult:
    """One scan scored without a database.

    Attributes
    ----------
    prepared : PreparedSeries
        Model inputs, biomarkers, QA flags and picture (when ``qa_dir`` was given).
    prediction : Prediction
        ``p_fracture`` and ``risk`` (P(fracture by year t), t = 1..T).
    model_id : str
    """

    prepared: PreparedSeries
    prediction: Any  # models.inference.Prediction
    model_id: str


def score_paths(
    paths: Sequence[Path | str] | Path | str,
    config: Config,
    model_path: Path | str | None = None,
    *,
    qa_dir: Path | str | None = None,
    masks_dir: Path | str | None = None,
    height_cm: float | None = None,
    series_uid: str | None = None,
    device: str = "auto",
    model: LoadedModel | None = None,
) -> AdhocResult:
    """Load, prepare and score one series (DICOM files or one NIfTI file).

    Parameters
    ----------
    paths : path-like or sequence of path-like
        The files of one DICOM series, or one ``.nii``/``.nii.gz``.
    config : Config
        ``[loading]`` and ``[preprocessing]``; ``[score] model`` when ``model_path`` is None.
    model_path : path-like, optional
        Checkpoint; default ``[score] model`` or the shipped one.
    qa_dir : path-like, optional
        Folder for the QA picture.
    masks_dir : path-like, optional
        TotalSegmentator output root instead of the built-in segmenter.
    height_cm : float, optional
        For the L3 skeletal muscle index.
    series_uid : str, optional
        Default the files' SeriesInstanceUID (the file path for NIfTI).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    model : LoadedModel, optional
        An already loaded model (a dashboard keeps one between calls); overrides
        ``model_path``.

    Raises
    ------
    VfriskError
        The loader's and anatomy's reason codes, ``model_missing``, ``checkpoint_mismatch``,
        or the model stage's (``no_levels_present``).
    """
    from engine.score.model import score_prepared

    version = str(config["preprocessing"]["version"])
    if model is None:
        default = config["score"]["model"] or None
        model = load_model(model_path if model_path is not None else default, version, device)
    volume = load_volume(
        paths if isinstance(paths, str | Path) else list(paths), **config["loading"]
    )
    prepared = prepare_volume(
        volume, series_uid or volume.source, PreprocessingSettings.from_config(config),
        masks_dir=masks_dir, height_cm=height_cm, qa_dir=qa_dir,
    )  # fmt: skip
    result = score_prepared(model, [prepared])[0]
    if isinstance(result, PrepareFailure):
        raise VfriskError(result.reason_code, result.error)
    return AdhocResult(prepared=prepared, prediction=result, model_id=model.model_id)
