"""The spinal canal's attenuation: an internal reference for the scanner's HU calibration.

A CT scanner's HU scale drifts by several HU between scanners and over time (the
synthetic external sites read +6 and -8 HU); an absolute density threshold such as L1
trabecular HU <= 110, or a model that reads absolute intensities, moves with it.
Phantomless ("internal") calibration reads a tissue of known, stable attenuation in the
same scan. The spinal canal (cerebrospinal fluid, with the cord down to about L1) sits
directly behind every vertebral body, inside every crop of the spine, does not enhance
with intravenous contrast and does not vary with bone or muscle health.

Rule, per vertebral level: on each axial slice of the middle half of the body's
cranio-caudal extent, find the body's posterior wall on the midline (following the body
within 3 mm of its mean column back from its centroid) and the canal behind it: the
longest run of the midline profile, within 30 mm, from -50 to 100 HU (fluid and soft
tissue, between the wall's cortex and the laminae; not bone, fat or air). The box from
1 mm into that run to 1 mm before its end (at least 3 mm deep) and 4 mm either side of
the midline counts when at least 60 % of its voxels lie from -50 to 100 HU; the level's
value is the median of those voxels over its slices, or NaN when fewer than
:data:`MIN_VOXELS` qualify (a canal full of hardware, a collapsed body at thick slices).

The reading is a reference, not a calibration by itself: what it should read depends on
the level (cord or fluid) and the site's reconstruction, so the model compares it with
what its development site read (``models.network.FractureNet.fit_feature_scaling``).
"""

from __future__ import annotations

import math

import numpy as np

from engine.anatomy.labels import BODY_LEVELS, Segmentation

__all__ = ["MIN_VOXELS", "canal_hu"]

_MIDLINE_MM = 3.0
_MARGIN_MM = 1.0  # kept off the wall and the laminae
_REACH_MM = 30.0  # the deepest canal looked for
_SHORTEST_MM = 3.0  # a shallower canal is not read
_HALF_WIDTH_MM = 4.0
_VALID_HU = (-50.0, 100.0)
#: A slice counts only when this share of its box qualifies (else the box is not in the
#: canal: a misplaced wall, bone or fat behind a collapsed body).
_MIN_FRACTION = 0.6
#: Fewer qualifying voxels than this and the level has no reading.
MIN_VOXELS = 30


def _level_value(hu: np.ndarray, body: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Median canal HU behind ``body`` (bool, same shape and origin as ``hu``)."""
    _, dy, dx = spacing
    ks = np.flatnonzero(body.any(axis=(1, 2)))
    n = ks.size
    if n >= 4:
        ks = ks[n // 4 : n - n // 4]
    w_mid = max(1, round(_MIDLINE_MM / dx))
    w_half = max(1, round(_HALF_WIDTH_MM / dx))
    margin = max(1, round(_MARGIN_MM / dy))
    reach, shortest = round(_REACH_MM / dy), round(_SHORTEST_MM / dy)
    values = []
    for k in ks:
        plane = body[k]
        ys, xs = np.nonzero(plane)
        jc, ic = round(float(ys.mean())), round(float(xs.mean()))
        strip = plane[:, max(0, ic - w_mid) : ic + w_mid + 1].any(axis=1)
        if not strip[jc]:  # the centroid is not in the body (a split or odd outline)
            continue
        # the wall: where the body, followed back from its centroid, ends (a stray
        # fragment further back is not the wall)
        gaps = np.flatnonzero(~strip[jc:])
        j_wall = jc + (int(gaps[0]) if gaps.size else strip.size - jc) - 1
        # the canal's depth on the midline: from the wall to the laminae (or anything
        # outside the fluid range)
        cols = slice(max(0, ic - w_mid), ic + w_mid + 1)
        profile = np.median(hu[k, j_wall + 1 : j_wall + 1 + reach, cols], axis=1)
        inside = (profile >= _VALID_HU[0]) & (profile <= _VALID_HU[1])
        # the longest run of fluid-range values: the canal (the wall's cortex, a
        # bony rim and the laminae break the profile into runs)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], inside.view(np.int8), [0]))))
        if edges.size == 0:
            continue
        starts, stops = edges[0::2], edges[1::2]
        best = int(np.argmax(stops - starts))
        j0 = j_wall + 1 + int(starts[best]) + margin
        j1 = j_wall + 1 + int(stops[best]) - margin
        if j1 - j0 < shortest:
            continue
        roi = hu[k, j0:j1, max(0, ic - w_half) : ic + w_half + 1]
        valid = (roi >= _VALID_HU[0]) & (roi <= _VALID_HU[1])
        if valid.sum() >= _MIN_FRACTION * roi.size:  # else the box is not in the canal
            values.append(roi[valid])
    found = np.concatenate(values) if values else np.empty(0, np.float32)
    return float(np.median(found)) if found.size >= MIN_VOXELS else math.nan


def canal_hu(hu: np.ndarray, segmentation: Segmentation) -> dict[str, float]:
    """Median attenuation (HU) of the spinal canal behind each labelled body.

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape ``segmentation.grid.shape_zyx`` (the canonical grid: rows grow
        posteriorly).
    segmentation : Segmentation
        With the vertebral bodies labelled by level.

    Returns
    -------
    dict
        Level -> HU for every body in the segmentation; NaN where the canal could not be
        read (see the module doc).
    """
    if hu.shape != segmentation.labels.shape:
        raise ValueError(f"hu {hu.shape} and labels {segmentation.labels.shape} differ")
    boxes = segmentation.boxes
    out = {}
    for lid, level in BODY_LEVELS.items():
        if lid not in boxes:
            continue
        zs, ys, xs = boxes[lid]
        # the body's box, extended behind it to the volume's back and to its right edge
        # (the canal lies behind the body; the ROI may reach past the box's columns)
        box = (zs, slice(ys.start, None), slice(xs.start, None))
        body = segmentation.labels[box] == lid
        out[level] = _level_value(hu[box], body, segmentation.grid.spacing_zyx)
    return out
