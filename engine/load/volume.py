"""The loader's output record: a CT volume in HU on the canonical axial grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.geometry import Grid

__all__ = ["AIR_HU", "Volume"]

AIR_HU = -1024.0
"""HU given to padding, out-of-field and sub-air voxels (the usual CT air floor)."""


@dataclass(frozen=True)
class Volume:
    """A loaded volume.

    Attributes
    ----------
    hu : np.ndarray
        float32, shape ``grid.shape_zyx`` = (nz, ny, nx), indexed ``[k, j, i]`` in the
        canonical orientation of :class:`engine.geometry.Grid` (column ``i`` along +x =
        patient left, row ``j`` along +y = posterior, slice ``k`` along +z = head; slice 0
        is the most caudal). Values in HU.
    grid : Grid
        Voxel geometry in DICOM patient coordinates (LPS, mm).
    warnings : tuple of str
        What the loader repaired (interpolated slices, tilt correction, ...), in words.
    source : str
        SeriesInstanceUID for DICOM, the file path for NIfTI.
    """

    hu: np.ndarray
    grid: Grid
    warnings: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.hu.shape != self.grid.shape_zyx:
            raise ValueError(f"array shape {self.hu.shape} differs from grid {self.grid.shape_zyx}")
        if self.hu.dtype != np.float32:
            raise ValueError(f"hu must be float32, got {self.hu.dtype}")
