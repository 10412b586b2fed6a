"""Pure geometry of DICOM image stacks, from ImageOrientationPatient and ImagePositionPatient.

Shared by the indexer (coverage, orientation checks from headers) and the loader (slice
ordering, tilt correction). Patient coordinates are DICOM LPS in mm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "axial_angle_deg",
    "positions_along_normal",
    "slice_normal",
    "stack_tilt_deg",
]


def slice_normal(iop: Sequence[float]) -> np.ndarray:
    """Unit normal of the image plane: row direction x column direction, shape (3,).

    Parameters
    ----------
    iop : sequence of 6 float
        ImageOrientationPatient: direction cosines of the first row, then first column.
    """
    v = np.asarray(iop, dtype=np.float64).reshape(2, 3)
    normal = np.cross(v[0], v[1])
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ValueError(f"ImageOrientationPatient {list(iop)} has parallel axes")
    return normal / norm


def positions_along_normal(iop: Sequence[float], ipps: np.ndarray) -> np.ndarray:
    """Position (mm) of each slice along the plane normal: ``ipp . normal``, shape (n,).

    Sorting by this, not by InstanceNumber or file name, orders a stack correctly
    (PS3.3 C.7.6.2.1.1).
    """
    return np.asarray(ipps, dtype=np.float64).reshape(-1, 3) @ slice_normal(iop)


def axial_angle_deg(iop: Sequence[float]) -> float:
    """Angle (degrees) between the image plane normal and the patient z axis (0 = axial)."""
    cos = abs(float(slice_normal(iop)[2]))
    return float(np.degrees(np.arccos(min(cos, 1.0))))


def stack_tilt_deg(iop: Sequence[float], ipps: np.ndarray) -> float:
    """Angle (degrees) between the slice stacking direction and the plane normal.

    Zero for an orthogonal stack; the gantry tilt for a tilted acquisition. Needs two or
    more distinct positions; returns 0.0 otherwise.
    """
    p = np.asarray(ipps, dtype=np.float64).reshape(-1, 3)
    order = np.argsort(positions_along_normal(iop, p))
    step = p[order[-1]] - p[order[0]]
    length = float(np.linalg.norm(step))
    if length < 1e-6:
        return 0.0
    cos = abs(float(step @ slice_normal(iop))) / length
    return float(np.degrees(np.arccos(min(cos, 1.0))))
