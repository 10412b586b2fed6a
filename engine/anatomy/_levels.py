"""Name the vertebral bodies found along the column: anatomical anchors, then counting.

Two anchors, both read from bone lateral to the column (50-110 mm from its centre, where
lumbar transverse processes, at most ~45 mm, do not reach):

* **Last ribs.** T10-T12 carry ribs (T11 and T12 short floating ribs) across the height of
  their bodies; L1-L4 carry none. The lowest body of the run of rib-bearing bodies that
  starts at the cranial end of the scan is T12; bodies below are counted L1, L2, ...
* **Pelvis.** The iliac wings and the sacrum flank L5 and the sacral segments. The highest
  body of the run of pelvis-flanked bodies that ends at the caudal end of the scan is L5;
  bodies above are counted L4, L3, ...

A body "bears" lateral bone when at least half of the slices of its central 60 % hold
>= 20 mm^2 of bone (> 250 HU) in that band. When both anchors are present and disagree
(a body missed or split), the pelvis anchor is used only if the rib anchor is absent;
the disagreement is reported as the ``level_anchor_conflict`` flag. A body cut by the
first or last slice is counted but not labelled, and its level is flagged missing.
"""

from __future__ import annotations

import numpy as np

from engine.anatomy._spine import Body, Column
from engine.geometry import Grid

__all__ = ["LEVEL_ORDER", "lateral_bone", "name_bodies"]

#: Cranial to caudal.
LEVEL_ORDER: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2")
_BAND_MM = (50.0, 110.0)
_MIN_LATERAL_MM2 = 20.0
_LATERAL_HU = 250.0


def lateral_bone(hu: np.ndarray, grid: Grid, column: Column, body: Body) -> bool:
    """True when ``body`` is flanked by bone lateral to the column (ribs or iliac wings).

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape (nz, ny, nx).
    grid : Grid
        Its grid.
    column, body
        From :mod:`engine.anatomy._spine`.
    """
    dz, dy, dx = grid.spacing_zyx
    nz, ny, nx = grid.shape_zyx
    h = body.k1 - body.k0
    k0 = body.k0 + int(np.floor(0.2 * h))
    k1 = max(k0 + 1, body.k1 - int(np.floor(0.2 * h)))
    jc = body.center_kji[1]
    j0 = max(0, int(jc - 40.0 / dy))
    j1 = min(ny, int(jc + 70.0 / dy))
    s = max(1, int(round(1.5 / dx)))  # lateral bone is large: 1.5 mm sampling is enough
    ic = body.center_kji[2]
    inner, outer = (b / dx for b in _BAND_MM)
    sides = []
    for lo, hi in ((ic - outer, ic - inner), (ic + inner, ic + outer)):
        a, b = max(0, int(lo)), min(nx, int(hi))
        if b > a:
            sides.append(hu[k0:k1, j0:j1:s, a:b:s] > _LATERAL_HU)
    if not sides:
        return False
    area = sum(side.sum(axis=(1, 2)) for side in sides) * (s * s * dy * dx)
    return bool(np.mean(area >= _MIN_LATERAL_MM2) >= 0.5)


def name_bodies(lateral: list[bool]) -> tuple[list[str | None], tuple[str, ...]]:
    """Level name of each body (caudal first, as found), or None when no anchor exists.

    Parameters
    ----------
    lateral : list of bool
        Per body (caudal first): flanked by lateral bone.

    Returns
    -------
    names : list of str or None
        Level per body, caudal first; all None when the levels cannot be named.
    flags : tuple of str
        ``level_anchor_conflict`` when ribs and pelvis disagree.
    """
    n = len(lateral)
    top_down = lateral[::-1]  # cranial first
    rib_t12 = pelvis_l5 = None
    if n and top_down[0]:
        run = 0
        while run < n and top_down[run]:
            run += 1
        if run < n:
            rib_t12 = run - 1  # index (cranial first) of T12
    if n and top_down[-1]:
        run = 0
        while run < n and top_down[n - 1 - run]:
            run += 1
        if run < n:
            pelvis_l5 = n - run  # index (cranial first) of L5
    flags: tuple[str, ...] = ()
    if rib_t12 is not None and pelvis_l5 is not None and pelvis_l5 - rib_t12 != 5:
        flags = ("level_anchor_conflict",)
    if rib_t12 is not None:
        offset = LEVEL_ORDER.index("T12") - rib_t12
    elif pelvis_l5 is not None:
        offset = LEVEL_ORDER.index("L5") - pelvis_l5
    else:
        return [None] * n, flags
    names_top_down = [
        LEVEL_ORDER[i + offset] if 0 <= i + offset < len(LEVEL_ORDER) else None for i in range(n)
    ]
    return names_top_down[::-1], flags
