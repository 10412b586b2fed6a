"""Anatomy: localize T12-L4 and the paraspinal and psoas muscles, build model inputs, and
measure bone and muscle biomarkers (issue 4).

``segment`` (built-in segmenter) or ``load_masks`` (TotalSegmentator output) give a
:class:`Segmentation`; ``build_inputs`` turns it and the volume into the model's
:class:`ModelInputs`; ``measure_biomarkers`` gives the per-level :class:`Biomarkers`;
``qa_flags`` and ``qa_png`` check and picture the result.
"""

from engine.anatomy.biomarkers import Biomarkers, LevelBiomarkers, measure_biomarkers
from engine.anatomy.inputs import (
    ModelInputs,
    PreprocessingSettings,
    build_inputs,
    load_inputs,
    save_inputs,
)
from engine.anatomy.labels import BODY_LEVELS, LABEL_NAMES, MUSCLE_LABELS, Segmentation
from engine.anatomy.masks import load_masks
from engine.anatomy.qa import qa_flags, qa_png
from engine.anatomy.segment import segment

__all__ = [
    "BODY_LEVELS",
    "LABEL_NAMES",
    "MUSCLE_LABELS",
    "Biomarkers",
    "LevelBiomarkers",
    "ModelInputs",
    "PreprocessingSettings",
    "Segmentation",
    "build_inputs",
    "load_inputs",
    "load_masks",
    "measure_biomarkers",
    "qa_flags",
    "qa_png",
    "save_inputs",
    "segment",
]
