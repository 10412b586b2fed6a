"""Voxel grids in DICOM patient coordinates.

Every volume in vfrisk is a numpy array of shape ``(nz, ny, nx)`` indexed ``[k, j, i]``
(slice, row, column) on an axial grid in the DICOM patient coordinate system (LPS, mm):
``x`` grows towards the patient's left, ``y`` towards posterior, ``z`` towards the head.
Column ``i`` runs along ``+x``, row ``j`` along ``+y`` and slice ``k`` along ``+z``, so slice 0
is the most caudal one. This is the orientation of a head-first supine axial CT with
ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]`` and SimpleITK's default (identity) direction,
which keeps DICOM, SimpleITK and NIfTI label maps aligned without flips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Grid"]


@dataclass(frozen=True)
class Grid:
    """An axial voxel grid.

    Attributes
    ----------
    origin_xyz : tuple of float
        Patient position (LPS, mm) of the centre of voxel ``[0, 0, 0]``.
    spacing_zyx : tuple of float
        Voxel spacing ``(dz, dy, dx)`` in mm.
    shape_zyx : tuple of int
        Array shape ``(nz, ny, nx)``.
    """

    origin_xyz: tuple[float, float, float]
    spacing_zyx: tuple[float, float, float]
    shape_zyx: tuple[int, int, int]

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.spacing_zyx):
            raise ValueError(f"grid spacing must be positive, got {self.spacing_zyx}")
        if any(n <= 0 for n in self.shape_zyx):
            raise ValueError(f"grid shape must be positive, got {self.shape_zyx}")

    def axis_x(self) -> np.ndarray:
        """Patient x (mm) of each column, shape (nx,)."""
        return self.origin_xyz[0] + self.spacing_zyx[2] * np.arange(self.shape_zyx[2])

    def axis_y(self) -> np.ndarray:
        """Patient y (mm) of each row, shape (ny,)."""
        return self.origin_xyz[1] + self.spacing_zyx[1] * np.arange(self.shape_zyx[1])

    def axis_z(self) -> np.ndarray:
        """Patient z (mm) of each slice, shape (nz,)."""
        return self.origin_xyz[2] + self.spacing_zyx[0] * np.arange(self.shape_zyx[0])

    def to_index(self, xyz: tuple[float, float, float]) -> tuple[float, float, float]:
        """Continuous voxel index ``(k, j, i)`` of a patient point ``(x, y, z)`` in mm."""
        x, y, z = xyz
        dz, dy, dx = self.spacing_zyx
        ox, oy, oz = self.origin_xyz
        return ((z - oz) / dz, (y - oy) / dy, (x - ox) / dx)

    def to_patient(self, kji: tuple[float, float, float]) -> tuple[float, float, float]:
        """Patient point ``(x, y, z)`` in mm of a (continuous) voxel index ``(k, j, i)``."""
        k, j, i = kji
        dz, dy, dx = self.spacing_zyx
        ox, oy, oz = self.origin_xyz
        return (ox + i * dx, oy + j * dy, oz + k * dz)

    def index_box(
        self, lo_xyz: tuple[float, float, float], hi_xyz: tuple[float, float, float]
    ) -> tuple[slice, slice, slice] | None:
        """Slices ``(k, j, i)`` covering the patient-space box ``[lo, hi]``, clipped to the grid.

        Returns None when the box lies entirely outside the grid.
        """
        k0, j0, i0 = self.to_index(lo_xyz)
        k1, j1, i1 = self.to_index(hi_xyz)
        out = []
        for a, b, n in (
            (k0, k1, self.shape_zyx[0]),
            (j0, j1, self.shape_zyx[1]),
            (i0, i1, self.shape_zyx[2]),
        ):
            lo, hi = max(int(np.floor(min(a, b))), 0), min(int(np.ceil(max(a, b))) + 1, n)
            if lo >= hi:
                return None
            out.append(slice(lo, hi))
        return (out[0], out[1], out[2])

    def crop(self, box: tuple[slice, slice, slice]) -> Grid:
        """The grid of ``array[box]`` (slices with steps of 1, within the grid)."""
        starts = []
        shape = []
        for sl, n in zip(box, self.shape_zyx, strict=True):
            lo, hi, step = sl.indices(n)
            if step != 1 or hi <= lo:
                raise ValueError(f"crop box {box} is not a non-empty unit-step box of {self}")
            starts.append(lo)
            shape.append(hi - lo)
        return Grid(
            origin_xyz=self.to_patient((starts[0], starts[1], starts[2])),
            spacing_zyx=self.spacing_zyx,
            shape_zyx=(shape[0], shape[1], shape[2]),
        )
