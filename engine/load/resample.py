"""Pure array geometry of loading: canonical orientation, slice interpolation, tilt/oblique.

An image array of any orientation is described by ``origin`` (patient position, LPS mm, of
voxel ``[0, 0, 0]``) and a 3 x 3 ``matrix`` whose column ``a`` is the patient displacement
(mm) of one step along array axis ``a``. :func:`to_canonical` brings it onto the canonical
grid of :class:`engine.geometry.Grid` (``[k, j, i]`` along +z, +y, +x):

- exactly, by transposes and flips, when every axis lies along a patient axis (feet-first,
  prone, decubitus, transposed rows and columns); no voxel value changes;
- otherwise (gantry tilt: the slices are stacked along z but their planes are tilted, so
  the voxel lattice is sheared; or an oblique plane) by trilinear resampling
  (``scipy.ndimage.affine_transform``) onto an axis-aligned grid of the same shape and
  spacings, centred on the input's centre; voxels that fall outside the acquired field
  are air (-1024 HU).
"""

from __future__ import annotations

import itertools

import numpy as np

from engine.geometry import Grid
from engine.load.volume import AIR_HU

__all__ = ["interpolate_slices", "is_axis_aligned", "to_canonical"]

# Largest off-axis direction cosine treated as exactly axis-aligned: over 500 mm it moves a
# voxel by < 0.5 mm, and it absorbs the 6-decimal rounding of ImageOrientationPatient.
_AXIS_TOLERANCE = 1e-3
_CANONICAL_AXIS = (2, 1, 0)  # patient x -> array axis 2 (i), y -> 1 (j), z -> 0 (k)


def _assignment(matrix: np.ndarray) -> tuple[int, ...]:
    """Patient axis (0 x, 1 y, 2 z) of each array axis: the permutation best aligned."""
    unit = np.abs(matrix / np.linalg.norm(matrix, axis=0))
    best = max(itertools.permutations(range(3)), key=lambda p: sum(unit[p[a], a] for a in range(3)))
    return tuple(best)


def is_axis_aligned(matrix: np.ndarray) -> bool:
    """Whether every column of ``matrix`` (shape (3, 3)) lies along one patient axis."""
    unit = np.abs(np.asarray(matrix, dtype=np.float64) / np.linalg.norm(matrix, axis=0))
    big = unit.max(axis=0)
    return bool(np.all(1.0 - big < _AXIS_TOLERANCE**2 / 2) and len(set(unit.argmax(0))) == 3)


def to_canonical(
    data: np.ndarray,
    origin: np.ndarray,
    matrix: np.ndarray,
    *,
    fill: float = AIR_HU,
    order: int = 1,
) -> tuple[np.ndarray, Grid, bool]:
    """Bring an array onto the canonical axial grid.

    Parameters
    ----------
    data : np.ndarray
        Volume, shape (n0, n1, n2), any orientation.
    origin : np.ndarray
        Patient position (x, y, z) in mm of the centre of voxel ``[0, 0, 0]``, shape (3,).
    matrix : np.ndarray
        Shape (3, 3); column ``a`` is the displacement (mm, LPS) of one step along axis ``a``.
    fill : float, optional
        Value of resampled voxels outside the input (air, -1024 HU, by default).
    order : int, optional
        Spline order of the resampling (1 linear; 0 nearest, for label maps).

    Returns
    -------
    array : np.ndarray
        float32, canonical orientation, C-contiguous.
    grid : Grid
        Its geometry.
    exact : bool
        True when only transposes and flips were needed (no interpolation).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    shape = np.array(data.shape)
    patient_axis = _assignment(matrix)
    # output axis b (0 k/z, 1 j/y, 2 i/x) takes input axis source[b]
    source = [0, 0, 0]
    for a, p in enumerate(patient_axis):
        source[_CANONICAL_AXIS[p]] = a
    norms = np.linalg.norm(matrix, axis=0)
    out_shape = tuple(int(shape[a]) for a in source)
    spacing_zyx = tuple(float(norms[a]) for a in source)
    if is_axis_aligned(matrix):
        signs = [np.sign(matrix[patient_axis[a], a]) for a in range(3)]
        corner = np.array([0 if signs[a] > 0 else shape[a] - 1 for a in range(3)])
        out = data.transpose(source)
        flips = tuple(slice(None, None, -1 if signs[a] < 0 else None) for a in source)
        out = np.ascontiguousarray(out[flips], dtype=np.float32)
        new_origin = origin + matrix @ corner
        grid = Grid(tuple(float(v) for v in new_origin), spacing_zyx, out_shape)
        return out, grid, True

    from scipy import ndimage  # only tilted or oblique stacks need it

    centre = origin + matrix @ ((shape - 1) / 2.0)
    half_extent_xyz = np.array(
        [spacing_zyx[2] * (out_shape[2] - 1), spacing_zyx[1] * (out_shape[1] - 1),
         spacing_zyx[0] * (out_shape[0] - 1)]
    ) / 2.0  # fmt: skip
    new_origin = centre - half_extent_xyz
    # output index (k, j, i) -> patient point: new_origin + step @ (k, j, i)
    step = np.zeros((3, 3))
    step[2, 0], step[1, 1], step[0, 2] = spacing_zyx
    inverse = np.linalg.inv(matrix)
    out = ndimage.affine_transform(
        np.asarray(data, dtype=np.float32),
        inverse @ step,
        offset=inverse @ (new_origin - origin),
        output_shape=out_shape,
        order=order,
        mode="constant",
        cval=fill,
        prefilter=False,
    )
    grid = Grid(tuple(float(v) for v in new_origin), spacing_zyx, out_shape)
    return np.ascontiguousarray(out, dtype=np.float32), grid, False


def interpolate_slices(stack: np.ndarray, positions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Linearly interpolate a stack of slices at new positions along the stack axis.

    Parameters
    ----------
    stack : np.ndarray
        Slices, shape (n, rows, cols), float32, ordered by ``positions``.
    positions : np.ndarray
        Strictly increasing positions (mm) of the slices, shape (n,), n >= 2.
    targets : np.ndarray
        Positions (mm) to sample, shape (m,), within ``[positions[0], positions[-1]]``.

    Returns
    -------
    np.ndarray
        float32, shape (m, rows, cols). A target within 1e-3 mm of an input slice copies
        it unchanged.
    """
    out = np.empty((len(targets), *stack.shape[1:]), dtype=np.float32)
    below = np.clip(np.searchsorted(positions, targets, side="right") - 1, 0, len(positions) - 2)
    for m, (t, lo) in enumerate(zip(targets, below, strict=True)):
        p0, p1 = positions[lo], positions[lo + 1]
        if abs(t - p0) < 1e-3:
            out[m] = stack[lo]
        elif abs(t - p1) < 1e-3:
            out[m] = stack[lo + 1]
        else:
            w = np.float32((t - p0) / (p1 - p0))
            np.multiply(stack[lo], 1 - w, out=out[m])
            out[m] += w * stack[lo + 1]
    return out
