"""The loader's output record: a CT volume in HU on the canonical axial grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.geometry import Grid

__all__ = ["AIR_HU", "Volume", "thick_slices"]

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


def thick_slices(volume: Volume, factor: int, phase: int = 0) -> Volume:
    """The volume as a scanner would reconstruct it with ``factor`` times thicker slices.

    Each output slice is the mean of ``factor`` consecutive input slices (a slab), as a
    thick reconstruction averages the thin ones: slice thickness and spacing grow by
    ``factor``, noise falls by about its square root, and partial volume mixes endplate
    and disc. ``vfrisk train`` uses it to show the network its development scans as a
    thick-slice site would acquire them (``[train] thick_mm``).

    Parameters
    ----------
    volume : Volume
    factor : int
        Input slices per output slice (>= 1; 1 returns ``volume``).
    phase : int
        First input slice of the first slab, in [0, factor): the slab boundaries fall
        elsewhere on the anatomy for each phase. Input slices before it and after the last
        whole slab are dropped.

    Returns
    -------
    Volume
        Same in-plane grid; ``origin`` z at the centre of the first slab.

    Raises
    ------
    ValueError
        ``factor`` < 1, ``phase`` outside [0, factor), or fewer than ``factor`` slices
        from ``phase`` on.
    """
    if factor < 1 or not 0 <= phase < factor:
        raise ValueError(
            f"thick_slices: need factor >= 1 and 0 <= phase < factor, got {factor}, {phase}"
        )
    if factor == 1:
        return volume
    nz, ny, nx = volume.hu.shape
    n_out = (nz - phase) // factor
    if n_out < 1:
        raise ValueError(f"thick_slices: {nz} slices cannot make one slab of {factor} from {phase}")
    slabs = volume.hu[phase : phase + n_out * factor].reshape(n_out, factor, ny, nx)
    dz, dy, dx = volume.grid.spacing_zyx
    x, y, z = volume.grid.origin_xyz
    grid = Grid(
        origin_xyz=(x, y, z + (phase + (factor - 1) / 2) * dz),
        spacing_zyx=(dz * factor, dy, dx),
        shape_zyx=(n_out, ny, nx),
    )
    return Volume(
        hu=slabs.mean(axis=1, dtype=np.float32),
        grid=grid,
        warnings=volume.warnings,
        source=volume.source,
    )
