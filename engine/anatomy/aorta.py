"""Abdominal aorta attenuation: is the scan contrast-enhanced?

Intravenous contrast raises trabecular attenuation by 10-20 HU (portal-venous phase), so
an HU biomarker must say whether it was read on an enhanced scan. The DICOM contrast tags
are often missing or wrong; the aorta itself tells: about 35-50 HU without contrast,
150-200 HU in the portal-venous phase.

Rule, per vertebral level of L1-L3 (T12 and L4 when those are missing): on the body's
middle axial slice, look in the window from the body's anterior edge to 45 mm in front of
it and 35 mm either side of its centre (the aorta lies on the anterior left of the
lumbar spine down to the bifurcation at L4). Average HU in a 9 x 9 mm box at each
position, counting only voxels from -100 to 400 HU outside the bodies (cortex, calcified
plaque and air excluded); the aorta is the brightest box with >= 90 % such voxels.
The series value is the median over levels; the biomarkers flag ``contrast`` at >=
``CONTRAST_AORTA_HU`` (engine.anatomy.biomarkers).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from engine.anatomy.labels import BODY_LEVELS, Segmentation

__all__ = ["aorta_hu"]

_PREFERRED = ("L1", "L2", "L3")
_FALLBACK = ("T12", "L4")
_AHEAD_MM = 45.0
_SIDE_MM = 35.0
_BOX_MM = 9.0
_VALID_HU = (-100.0, 400.0)
_MIN_VALID = 0.9


def _level_value(hu: np.ndarray, seg: Segmentation, label: int) -> float | None:
    body = seg.labels == label
    zs = np.flatnonzero(body.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    z = int(zs[zs.size // 2])
    body2d = body[z]
    ys, xs = np.nonzero(body2d)
    _, dy, dx = seg.grid.spacing_zyx
    # y grows posteriorly: anterior of the body is smaller y
    y_front = int(ys.min())
    x_mid = float(xs.mean())
    y0 = max(0, y_front - int(math.ceil(_AHEAD_MM / dy)))
    x0 = max(0, int(x_mid - _SIDE_MM / dx))
    x1 = min(hu.shape[2], int(x_mid + _SIDE_MM / dx) + 1)
    if y_front - y0 < 3 or x1 - x0 < 3:
        return None
    window = hu[z, y0:y_front, x0:x1].astype(np.float32)
    bone = np.isin(seg.labels[z, y0:y_front, x0:x1], list(BODY_LEVELS))
    valid = (window >= _VALID_HU[0]) & (window <= _VALID_HU[1]) & ~bone
    size = (max(1, round(_BOX_MM / dy)), max(1, round(_BOX_MM / dx)))
    frac = ndimage.uniform_filter(valid.astype(np.float32), size=size, mode="constant")
    total = ndimage.uniform_filter(np.where(valid, window, 0.0), size=size, mode="constant")
    ok = frac >= _MIN_VALID
    if not ok.any():
        return None
    return float((total[ok] / frac[ok]).max())


def aorta_hu(hu: np.ndarray, segmentation: Segmentation) -> float | None:
    """Attenuation of the abdominal aorta (HU), or None when no level allows a reading.

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape ``segmentation.grid.shape_zyx``.
    segmentation : Segmentation
        With the vertebral bodies labelled by level.
    """
    ids = {name: lab for lab, name in BODY_LEVELS.items()}
    values = [
        v
        for name in _PREFERRED
        if name in segmentation.levels
        and (v := _level_value(hu, segmentation, ids[name])) is not None
    ]
    if not values:
        values = [
            v
            for name in _FALLBACK
            if name in segmentation.levels
            and (v := _level_value(hu, segmentation, ids[name])) is not None
        ]
    return float(np.median(values)) if values else None
