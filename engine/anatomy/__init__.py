"""Anatomy: localize T12-L4 and the paraspinal and psoas muscles, build model inputs, and
measure bone and muscle biomarkers (issue 4).
"""

from engine.anatomy.labels import (
    BODY_LEVELS,
    LABEL_NAMES,
    MUSCLE_LABELS,
    Segmentation,
)

__all__ = ["BODY_LEVELS", "LABEL_NAMES", "MUSCLE_LABELS", "Segmentation"]
