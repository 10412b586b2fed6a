"""The label map every anatomy source produces: built-in segmenter or imported masks.

One uint8 array on the loaded volume's grid (``engine.geometry.Grid``, canonical
orientation). Vertebral bodies only (posterior elements excluded) carry their level; the
four muscles carry fixed ids. The study's model looks at T12-L4 and at the paraspinal
(TotalSegmentator ``autochthon_*``) and psoas (``iliopsoas_*``) muscles.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from engine.anatomy._boxes import Box, label_boxes
from engine.geometry import Grid

__all__ = ["BODY_LEVELS", "LABEL_NAMES", "MUSCLE_LABELS", "Segmentation"]

#: Vertebral body label id -> level (same ids as the generator's ``bodies.nii.gz``).
BODY_LEVELS: dict[int, str] = {1: "T12", 2: "L1", 3: "L2", 4: "L3", 5: "L4"}
#: Muscle label id -> name (TotalSegmentator names).
MUSCLE_LABELS: dict[int, str] = {
    11: "iliopsoas_left",
    12: "iliopsoas_right",
    13: "autochthon_left",
    14: "autochthon_right",
}
LABEL_NAMES: dict[int, str] = {
    **{k: f"body_{v}" for k, v in BODY_LEVELS.items()},
    **MUSCLE_LABELS,
}


@dataclass(frozen=True)
class Segmentation:
    """Labels of one series on its volume's grid.

    Attributes
    ----------
    labels : np.ndarray
        uint8, shape ``grid.shape_zyx``; ids from :data:`LABEL_NAMES`, 0 elsewhere.
    grid : Grid
        The loaded volume's grid.
    levels : tuple of str
        Levels of T12-L4 found in the scan, cranial first (a subset when the scan starts
        below T12 or stops above L4).
    flags : tuple of str
        Stable flags such as ``missing_T12``, ``missing_L4``; QA flags are added by QA.
    source : str
        ``builtin`` or ``masks`` (imported, e.g. TotalSegmentator).
    """

    labels: np.ndarray
    grid: Grid
    levels: tuple[str, ...]
    flags: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.labels.dtype != np.uint8 or self.labels.shape != self.grid.shape_zyx:
            raise ValueError(
                f"labels must be uint8 of shape {self.grid.shape_zyx}, got "
                f"{self.labels.dtype} {self.labels.shape}"
            )

    @functools.cached_property
    def boxes(self) -> dict[int, Box]:
        """:func:`engine.anatomy._boxes.label_boxes` of ``labels``, found once (the
        inputs, biomarkers and QA each need them; ``labels`` is not changed after the
        segmentation is made)."""
        return label_boxes(self.labels)
