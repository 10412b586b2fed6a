"""Bone and muscle biomarkers per level T12-L4, from a CT in HU and its segmentation.

Per level (:class:`LevelBiomarkers`):

- **Trabecular attenuation** (HU): mean over the body eroded by ``_ROI_MARGIN_MM`` in
  plane and ``max(_ROI_MARGIN_Z_MM, one slice)`` along z (an ellipsoidal structuring
  element), which leaves the cortical shell, the endplates and their partial volume out
  (Pickhardt et al. 2013 place an ROI in the trabecular bone the same way). A level with
  cement or metal (more than ``_CEMENT_MIN_MM3`` above ``_CEMENT_HU``) is flagged
  ``cement`` and excluded from every HU biomarker.
- **Heights** (mm), along the body's own axis: the axis is the direction between the
  centroids of the neighbouring bodies (the spine's local axis; one neighbour: towards it;
  none: +z). In the mid-sagittal slab of the body (within ``_SLAB_FRACTION`` of its width
  from the midline) the AP extent of the mask gives the depth; lines parallel to the axis
  are cast through the mask at the anterior edge (3-12 % of the depth from the anterior
  wall), the middle (45-55 %) and the posterior edge (88-97 %), and each height is the
  median length of its lines inside the mask. On slices of at most 2 mm each line is
  first cut to its cortical endplates (its outermost voxels >= 100 HU above the body's
  median): a segmentation that fills in the concavity of a biconcave collapse (in front
  of the endplate, with fat or disc) otherwise hides it. On thicker slices, where the
  endplate is averaged into its slice, the lines run through the mask smoothed in plane
  (``_occupancy``) and interpolated along them, so that the share of a slice's
  neighbouring columns holding the body places each endplate within its slice: heights
  no longer come in whole slices (a 20-25 % height loss is about one 5 mm slice).
- **Genant grade and shape** (REFERENCE.md: grade 0 < 20 %, 1 20-25 %, 2 25-40 %,
  3 > 40 % height loss; wedge = anterior, biconcave = middle, crush = all): with a
  reference height ``h_ref`` = the median largest edge height of the patient's intact
  levels of T12-L4 (each scaled by its expected size ratio; intact: at least 80 % of the
  upper quartile, so that adjacent crushed bodies do not hide each other),
  ``wedge = 1 - Ha / Hp``, ``biconcave = 1 - Hm / max(Ha, Hp, h_ref)`` (``h_ref`` left
  out when ``max(Ha, Hp) < 0.8 h_ref``: a biconcave collapse sags the edges of the
  endplates too, a crushed body's middle is compared with its own edges), ``crush = 1 -
  max(Ha, Hp) / h_ref``; the largest loss names the shape and its size the grade. A body
  cut by the scan's first or last slice is ``truncated``: no heights, no grade.
- **Muscle**: cross-sectional area (cm2, the mask's area per slice, averaged over the
  body's slices) and mean attenuation (HU of the mask's voxels within -29..150, the
  skeletal muscle window) of psoas, paraspinal and both together.
- **Canal** (HU): the spinal canal's reading behind the body, passed in
  (:mod:`engine.anatomy.canal`): the scan's internal HU reference. A site whose canal
  reads several HU off the development site's reads its bone and muscle off too.

Per series (:class:`Biomarkers`): mean trabecular HU over the usable levels of T12-L4,
L1 HU, and at L3 the skeletal muscle index (total muscle area / height^2, cm2/m2, Martin
et al. 2013) when the patient's height is known. ``contrast`` is set from the DICOM tag
(ContrastBolusAgent) or an aorta attenuation >= ``CONTRAST_AORTA_HU`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from engine.anatomy._boxes import Box
from engine.anatomy._runs import erode
from engine.anatomy.labels import BODY_LEVELS, Segmentation

__all__ = [
    "CONTRAST_AORTA_HU",
    "Biomarkers",
    "BodyHeights",
    "LevelBiomarkers",
    "body_heights",
    "genant",
    "measure_biomarkers",
]

CONTRAST_AORTA_HU = 100.0  #: aorta above this is contrast-enhanced (non-contrast ~35-50 HU)
MUSCLE_HU = (-29.0, 150.0)  #: skeletal muscle window (Martin et al. 2013)
_ROI_MARGIN_MM = 4.0
_ROI_MARGIN_Z_MM = 3.0
_ROI_MIN_MM3 = 300.0
_CEMENT_HU = 1800.0  # above any cortical bone (true cortex <= ~1400 HU)
_CEMENT_MIN_MM3 = 100.0
_SLAB_FRACTION = 0.12
_PLATE_EXCESS_HU = 100.0  # endplate cortex: at least this far above the body's median HU
_LINE_STEP_MM = 0.2
_PLATE_MAX_DZ_MM = 2.0  # thin slices: lines cut to the endplates; thicker: smoothed mask
#: in-plane Gaussian sigma (mm; AP, lateral) of the mask on thick slices: little along AP,
#: where wedges and the lordotic tilt change the height (smoothing there pulls the edge
#: heights towards the middle)
_THICK_SMOOTH_MM = (1.0, 4.0)
_GRADE_EDGES = (0.20, 0.25, 0.40)  # Genant: grade 1, 2, 3 from these height losses
#: Expected vertebral body height relative to L1 (DESIGN.md table: T12 22-25, L1-L4 grows).
_SIZE_RATIO = {"T12": 0.94, "L1": 1.0, "L2": 1.03, "L3": 1.06, "L4": 1.08}
_LEVEL_ID = {level: i for i, level in BODY_LEVELS.items()}
_PSOAS, _PARASPINAL = (11, 12), (13, 14)


@dataclass(frozen=True)
class BodyHeights:
    """Vertebral body geometry along its own axis (mm; NaN when not measurable)."""

    anterior_mm: float
    middle_mm: float
    posterior_mm: float
    depth_mm: float
    axis_xyz: tuple[float, float, float]


@dataclass(frozen=True)
class LevelBiomarkers:
    """Biomarkers of one level. NaN / None where not measurable; see the module doc.

    Attributes
    ----------
    level : str
    present : bool
        The body is in the segmentation.
    trabecular_hu : float
        Mean HU of the trabecular ROI (NaN with cement, or when absent).
    roi_volume_cm3, body_volume_cm3 : float
    height_anterior_mm, height_middle_mm, height_posterior_mm, height_ref_mm : float
    wedge_loss, biconcave_loss, crush_loss : float
        Height-loss ratios (0-1).
    genant_grade : int or None
        0-3; None when not assessable (absent or truncated).
    shape : str
        '' (grade 0 or not assessable), 'wedge', 'biconcave' or 'crush'.
    psoas_area_cm2, paraspinal_area_cm2, muscle_area_cm2 : float
        Both sides together, mean over the level's slices.
    psoas_hu, paraspinal_hu, muscle_hu : float
        Mean HU within -29..150.
    canal_hu : float
        The spinal canal's median HU behind the body (:mod:`engine.anatomy.canal`): the
        scan's internal HU reference; NaN where unread.
    flags : tuple of str
        ``cement``, ``truncated``, ``padding``, ``small_roi``.
    """

    level: str
    present: bool
    trabecular_hu: float = math.nan
    roi_volume_cm3: float = math.nan
    body_volume_cm3: float = math.nan
    height_anterior_mm: float = math.nan
    height_middle_mm: float = math.nan
    height_posterior_mm: float = math.nan
    height_ref_mm: float = math.nan
    wedge_loss: float = math.nan
    biconcave_loss: float = math.nan
    crush_loss: float = math.nan
    genant_grade: int | None = None
    shape: str = ""
    psoas_area_cm2: float = math.nan
    paraspinal_area_cm2: float = math.nan
    muscle_area_cm2: float = math.nan
    psoas_hu: float = math.nan
    paraspinal_hu: float = math.nan
    muscle_hu: float = math.nan
    canal_hu: float = math.nan
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Biomarkers:
    """Biomarkers of one series.

    Attributes
    ----------
    series_uid : str
    levels : tuple of LevelBiomarkers
        T12..L4 in this order (absent levels with ``present`` False).
    mean_trabecular_hu : float
        Mean of ``trabecular_hu`` over the usable levels (NaN if none).
    l1_trabecular_hu : float
    l3_muscle_area_cm2, l3_muscle_hu : float
    smi_cm2_m2 : float
        L3 skeletal muscle index; NaN without height or L3.
    height_cm : float
        Patient height used for the SMI (NaN when unknown).
    contrast : bool or None
        Contrast-enhanced; None when neither tag nor aorta HU was given.
    flags : tuple of str
        Series flags: ``contrast``, ``missing_<LEVEL>``.
    """

    series_uid: str
    levels: tuple[LevelBiomarkers, ...]
    mean_trabecular_hu: float
    l1_trabecular_hu: float
    l3_muscle_area_cm2: float
    l3_muscle_hu: float
    smi_cm2_m2: float
    height_cm: float
    contrast: bool | None
    flags: tuple[str, ...]

    def level(self, name: str) -> LevelBiomarkers:
        """The record of level ``name``."""
        return next(lb for lb in self.levels if lb.level == name)


def _voxel_xyz(grid, idx: np.ndarray) -> np.ndarray:  # noqa: ANN001 - Grid
    """Patient (x, y, z) mm of voxel indices ``(n, 3)`` as (k, j, i)."""
    dz, dy, dx = grid.spacing_zyx
    ox, oy, oz = grid.origin_xyz
    return np.column_stack([ox + idx[:, 2] * dx, oy + idx[:, 1] * dy, oz + idx[:, 0] * dz])


def _line_lengths(
    occupancy: np.ndarray,
    grid,  # noqa: ANN001
    origins: np.ndarray,
    u: np.ndarray,
    offset_kji: tuple[int, int, int] = (0, 0, 0),
    hu: np.ndarray | None = None,
    plate_hu: float = math.inf,
) -> np.ndarray:
    """Length (mm) of each line ``origins[n] + t u`` where ``occupancy`` (float 0-1,
    interpolated linearly) is at least 0.5; ``occupancy[0, 0, 0]`` is voxel
    ``offset_kji`` of ``grid``. With ``hu`` (the same shape), the part inside is cut,
    from each end inwards, to its outermost sample at or above ``plate_hu`` (nearest
    voxel: the cortical endplate), when the line has one: what the mask holds beyond the
    endplate (a biconcave collapse filled in) is not body. All lines are sampled in one
    interpolation call (origins: shape (n, 3), patient mm; returns shape (n,))."""
    t = np.arange(-45.0, 45.0, _LINE_STEP_MM)
    pts = origins[:, None, :] + t[None, :, None] * u[None, None, :]  # (lines, samples, xyz)
    dz, dy, dx = grid.spacing_zyx
    ox, oy, oz = grid.origin_xyz
    kji = np.stack(
        [(pts[..., 2] - oz) / dz, (pts[..., 1] - oy) / dy, (pts[..., 0] - ox) / dx], axis=-1
    ) - np.asarray(offset_kji)
    flat = kji.reshape(-1, 3)
    inside = ndi.map_coordinates(occupancy, flat.T, order=1, mode="constant", cval=0.0) >= 0.5
    inside = inside.reshape(kji.shape[:2])
    if hu is not None and math.isfinite(plate_hu):
        near = np.rint(flat).astype(int)
        ok = np.all((near >= 0) & (near < np.array(hu.shape)), axis=1)
        bright = np.zeros(len(flat), dtype=bool)
        bright[ok] = hu[near[ok, 0], near[ok, 1], near[ok, 2]] >= plate_hu
        plate = inside & bright.reshape(inside.shape)
        has = plate.any(axis=1)
        first = plate.argmax(axis=1)
        last = plate.shape[1] - 1 - plate[:, ::-1].argmax(axis=1)
        n = np.arange(plate.shape[1])
        within = (n[None, :] >= first[:, None]) & (n[None, :] <= last[:, None])
        inside &= within | ~has[:, None]
    return inside.sum(axis=1) * _LINE_STEP_MM


def _occupancy(body: np.ndarray, grid) -> np.ndarray:  # noqa: ANN001
    """float32 body occupancy for the height lines, the shape of ``body``.

    On slices thicker than ``_PLATE_MAX_DZ_MM`` each slice of the mask is smoothed in
    plane (Gaussian, ``_THICK_SMOOTH_MM`` along y and x) and divided by the smoothed
    footprint of the body (its columns over all slices), within the footprint: where an
    endplate is uneven or tilted against the slices, the share of neighbouring columns
    that still hold the body in a slice places the endplate within that slice, so the
    heights no longer come in whole slices. On thin slices: the mask itself.
    """
    occ = body.astype(np.float32)
    dz, dy, dx = grid.spacing_zyx
    if dz <= _PLATE_MAX_DZ_MM:
        return occ
    sigma = (0.0, _THICK_SMOOTH_MM[0] / dy, _THICK_SMOOTH_MM[1] / dx)
    footprint = np.broadcast_to(body.any(axis=0), body.shape)
    num = ndi.gaussian_filter(occ, sigma, mode="constant")
    den = ndi.gaussian_filter(footprint.astype(np.float32), sigma, mode="constant")
    return np.where(footprint, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)


def body_heights(
    body: np.ndarray,
    grid,  # noqa: ANN001
    axis_xyz: np.ndarray,
    offset_kji: tuple[int, int, int] = (0, 0, 0),
    hu: np.ndarray | None = None,
) -> BodyHeights:
    """Anterior, middle and posterior heights of one body along ``axis_xyz``.

    Parameters
    ----------
    body : np.ndarray
        bool: one vertebral body, shape ``grid.shape_zyx`` or a box of the volume that
        holds the whole body (then ``offset_kji`` is the box's first voxel).
    grid : Grid
    axis_xyz : np.ndarray
        Unit cranial axis of the body (x, y, z), shape (3,).
    offset_kji : tuple of int, optional
        Voxel index of ``body[0, 0, 0]`` in ``grid``.
    hu : np.ndarray, optional
        float HU, the shape of ``body``. On slices of at most ``_PLATE_MAX_DZ_MM`` each
        line is cut to its cortical endplates: its outermost samples at least
        ``_PLATE_EXCESS_HU`` above the body's median HU (see ``_line_lengths``). Without
        it, or on thicker slices (where the endplate is averaged into its slice and the
        rule cut into trabecular bone), the mask alone is measured (through
        ``_occupancy``).

    Returns
    -------
    BodyHeights
    """
    plate_hu = math.inf
    if hu is not None and grid.spacing_zyx[0] <= _PLATE_MAX_DZ_MM:
        plate_hu = float(np.median(hu[body])) + _PLATE_EXCESS_HU
    occupancy = _occupancy(body, grid)
    u = np.asarray(axis_xyz, dtype=np.float64)
    u = u / np.linalg.norm(u)
    v = np.array([0.0, 1.0, 0.0]) - u[1] * u  # posterior, perpendicular to the axis
    v /= np.linalg.norm(v)
    w = np.cross(v, u)
    p = _voxel_xyz(grid, np.argwhere(body) + np.asarray(offset_kji))
    c = p.mean(axis=0)
    a, b = (p - c) @ w, (p - c) @ v
    a_lo, a_hi = np.percentile(a, [2, 98])
    half_slab = max(2.0, _SLAB_FRACTION * (a_hi - a_lo))
    a_mid = 0.5 * (a_lo + a_hi)
    bs = b[np.abs(a - a_mid) <= half_slab]
    b_lo, b_hi = np.percentile(bs, [0.5, 99.5])
    depth = float(b_hi - b_lo)

    # 3 bands x 5 offsets across the slab x 4 depths: 60 lines, measured together
    fractions = ((0.03, 0.12), (0.45, 0.55), (0.88, 0.97))
    origins = np.array(
        [
            c + aa * w + (b_lo + f * depth) * v
            for f0, f1 in fractions
            for aa in a_mid + np.linspace(-half_slab, half_slab, 5)
            for f in np.linspace(f0, f1, 4)
        ]
    )
    lengths = _line_lengths(occupancy, grid, origins, u, offset_kji, hu, plate_hu)
    anterior, middle, posterior = (float(np.median(b)) for b in lengths.reshape(3, -1))
    return BodyHeights(
        anterior_mm=anterior,
        middle_mm=middle,
        posterior_mm=posterior,
        depth_mm=depth,
        axis_xyz=(float(u[0]), float(u[1]), float(u[2])),
    )


def genant(
    anterior_mm: float, middle_mm: float, posterior_mm: float, ref_mm: float
) -> tuple[int, str, float, float, float]:
    """Genant semi-quantitative grade from heights (rule in the module doc).

    Returns
    -------
    grade : int
        0-3.
    shape : str
        '' for grade 0, else 'wedge', 'biconcave' or 'crush'.
    wedge, biconcave, crush : float
        The three height-loss ratios.
    """
    edge = max(anterior_mm, posterior_mm)
    # a biconcave collapse sags the whole endplate, its edges too: while the edges are
    # intact (grade 0 against the reference) the middle is compared with the reference
    intact = math.isfinite(ref_mm) and edge >= (1.0 - _GRADE_EDGES[0]) * ref_mm
    middle_ref = max(edge, ref_mm) if intact else edge
    losses = {
        "wedge": 1.0 - anterior_mm / posterior_mm if posterior_mm > 0 else 0.0,
        "biconcave": 1.0 - middle_mm / middle_ref if middle_ref > 0 else 0.0,
        "crush": 1.0 - edge / ref_mm if ref_mm > 0 and math.isfinite(ref_mm) else 0.0,
    }
    shape = max(losses, key=lambda k: losses[k])
    loss = losses[shape]
    grade = int(sum(loss >= e for e in _GRADE_EDGES))
    return grade, (shape if grade else ""), losses["wedge"], losses["biconcave"], losses["crush"]


def _ellipsoid(radii_vox: tuple[int, int, int]) -> np.ndarray:
    """bool (2rz+1, 2ry+1, 2rx+1): the voxels of the ellipsoid with these semi-axes."""
    rz, ry, rx = radii_vox
    z, y, x = np.ogrid[-rz : rz + 1, -ry : ry + 1, -rx : rx + 1]
    return (z / max(rz, 1e-9)) ** 2 * (rz > 0) + (y / max(ry, 1e-9)) ** 2 + (
        x / max(rx, 1e-9)
    ) ** 2 <= 1.0


def _trabecular(hu: np.ndarray, body: np.ndarray, spacing: tuple[float, float, float]):  # noqa: ANN202
    """(mean HU, ROI volume mm3, small_roi) of the eroded body."""
    dz, dy, dx = spacing
    rz = max(1, math.ceil(_ROI_MARGIN_Z_MM / dz - 1e-6))
    ry, rx = max(1, round(_ROI_MARGIN_MM / dy)), max(1, round(_ROI_MARGIN_MM / dx))
    voxel = dz * dy * dx
    roi = erode(body, _ellipsoid((rz, ry, rx)))
    small = roi.sum() * voxel < _ROI_MIN_MM3
    if small:  # a flat (crushed) body at thick slices: erode in plane only
        roi = erode(body, _ellipsoid((0, ry, rx)))
    if not roi.any():
        return math.nan, 0.0, True
    return float(hu[roi].mean(dtype=np.float64)), float(roi.sum() * voxel), bool(small)


def _muscle(hu: np.ndarray, labels: np.ndarray, ids: tuple[int, ...], px_mm2: float):  # noqa: ANN202
    """(mean area cm2 per slice, mean HU within the muscle window) over a slab.

    ``ids`` are consecutive label ids and ``labels`` uint8: ``np.isin(labels, ids)`` is one
    subtraction (wrapping below the first id) and one comparison."""
    if ids != tuple(range(ids[0], ids[-1] + 1)):
        raise ValueError(f"muscle ids must be consecutive, got {ids}")
    m = (labels - np.uint8(ids[0])) <= np.uint8(ids[-1] - ids[0])
    area = float(m.sum(axis=(1, 2)).mean() * px_mm2 / 100.0) if m.shape[0] else math.nan
    values = hu[m]
    values = values[(values >= MUSCLE_HU[0]) & (values <= MUSCLE_HU[1])]
    mean = float(values.mean(dtype=np.float64)) if values.size else math.nan
    return area, mean


def _pad(box: Box, shape: tuple[int, ...], pad: int = 2) -> Box:
    """``box`` grown by ``pad`` voxels each side, within ``shape``."""
    return tuple(  # type: ignore[return-value]
        slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, shape, strict=True)
    )


def _axes(centroids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cranial unit axis of each present level from its neighbours' centroids."""
    order = list(BODY_LEVELS.values())  # cranial first
    out = {}
    for level, c in centroids.items():
        i = order.index(level)
        up = centroids.get(order[i - 1]) if i > 0 else None
        down = centroids.get(order[i + 1]) if i + 1 < len(order) else None
        if up is not None and down is not None:
            d = up - down
        elif up is not None:
            d = up - c
        elif down is not None:
            d = c - down
        else:
            d = np.array([0.0, 0.0, 1.0])
        out[level] = d / np.linalg.norm(d)
    return out


def _reference_heights(edges: dict[str, float]) -> dict[str, float]:
    """Expected edge height (mm) of each level from the patient's intact levels.

    Parameters
    ----------
    edges : dict of str to float
        Level -> largest edge height ``max(Ha, Hp)`` (mm) of the measured, untruncated
        levels.

    Returns
    -------
    dict of str to float
        Level -> reference height ``h_ref`` (mm), the same levels as ``edges``.

    Notes
    -----
    Heights are scaled to L1 by ``_SIZE_RATIO``. The intact levels are those at least
    ``1 - _GRADE_EDGES[0]`` (80 %) of the upper quartile of the scaled heights (the
    upper quartile stays on intact bodies while at most half of the levels are
    collapsed, and a single body over-segmented into its disc cannot move it); the
    reference is their median. Adjacent crush fractures are common (fractures cluster),
    so the neighbours alone would hide each other: semi-quantitative reading compares a
    body with the normal vertebrae of the same spine (Genant et al. 1993).
    """
    scaled = {lv: e / _SIZE_RATIO[lv] for lv, e in edges.items() if math.isfinite(e) and e > 0}
    if not scaled:
        return {lv: math.nan for lv in edges}
    upper = float(np.percentile(list(scaled.values()), 75))
    intact = [h for h in scaled.values() if h >= (1.0 - _GRADE_EDGES[0]) * upper]
    ref = float(np.median(intact))
    return {lv: ref * _SIZE_RATIO[lv] for lv in edges}


def measure_biomarkers(
    hu: np.ndarray,
    segmentation: Segmentation,
    series_uid: str,
    *,
    height_cm: float | None = None,
    contrast_tag: bool | None = None,
    aorta_hu: float | None = None,
    canal_hu: Mapping[str, float] | None = None,
) -> Biomarkers:
    """Measure every biomarker of one series (definitions in the module doc).

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape ``segmentation.grid.shape_zyx``.
    segmentation : Segmentation
    series_uid : str
    height_cm : float, optional
        Patient height (cm) for the skeletal muscle index.
    contrast_tag : bool, optional
        Contrast according to the DICOM header (ContrastBolusAgent present).
    aorta_hu : float, optional
        Mean aorta attenuation (HU), when measured.
    canal_hu : mapping, optional
        Level -> the spinal canal's HU (:func:`engine.anatomy.canal.canal_hu`), when read.

    Returns
    -------
    Biomarkers
    """
    grid = segmentation.grid
    labels = segmentation.labels
    dz, dy, dx = grid.spacing_zyx
    voxel_mm3 = dz * dy * dx
    nz = grid.shape_zyx[0]
    # each body and muscle is measured in its own box: no pass over the whole volume
    label_box = segmentation.boxes
    bodies, centroids = {}, {}
    for level, i in _LEVEL_ID.items():
        if i in label_box:
            box = _pad(label_box[i], labels.shape)
            m = labels[box] == i
            start = np.array([s.start for s in box])
            bodies[level] = (box, m)
            centroids[level] = _voxel_xyz(grid, np.argwhere(m) + start).mean(axis=0)
    axes = _axes(centroids)
    geometry: dict[str, BodyHeights] = {}
    truncated: dict[str, bool] = {}
    for level, (box, m) in bodies.items():
        ks = np.flatnonzero(m.any(axis=(1, 2))) + box[0].start
        truncated[level] = bool(ks[0] == 0 or ks[-1] == nz - 1)
        start = (box[0].start, box[1].start, box[2].start)
        geometry[level] = body_heights(m, grid, axes[level], start, hu[box])
    muscle_boxes = [label_box[m] for m in _PSOAS + _PARASPINAL if m in label_box]
    rows = slice(
        min((b[1].start for b in muscle_boxes), default=0),
        max((b[1].stop for b in muscle_boxes), default=0),
    )
    cols = slice(min((b[2].start for b in muscle_boxes), default=0),
                 max((b[2].stop for b in muscle_boxes), default=0))  # fmt: skip

    order = list(BODY_LEVELS.values())
    reference = _reference_heights(
        {lv: max(g.anterior_mm, g.posterior_mm) for lv, g in geometry.items() if not truncated[lv]}
    )
    records = []
    for level in order:
        if level not in bodies:
            records.append(LevelBiomarkers(level=level, present=False))
            continue
        box, m = bodies[level]
        sub_hu = hu[box]
        flags = []
        cement = (sub_hu[m] > _CEMENT_HU).sum() * voxel_mm3 >= _CEMENT_MIN_MM3
        if cement:
            flags.append("cement")
        if truncated[level]:
            flags.append("truncated")
        touches_edge = box[1].start == 0 or box[2].start == 0
        touches_edge |= box[1].stop == grid.shape_zyx[1] or box[2].stop == grid.shape_zyx[2]
        if touches_edge or (sub_hu[m] <= -1000.0).any():
            flags.append("padding")
        t_hu, roi_mm3, small = _trabecular(sub_hu, m, grid.spacing_zyx)
        if small:
            flags.append("small_roi")
        if cement:
            t_hu = math.nan
        g = geometry[level]
        grade: int | None = None
        shape, losses = "", (math.nan, math.nan, math.nan)
        ref = math.nan
        if not truncated[level]:
            ref = reference[level]
            grade, shape, *rest = genant(g.anterior_mm, g.middle_mm, g.posterior_mm, ref)
            losses = tuple(rest)
        ks = np.arange(box[0].start, box[0].stop)[m.any(axis=(1, 2))]
        # the muscles lie in (rows, cols): the rest of the slab adds nothing
        slab_lab = labels[ks[0] : ks[-1] + 1, rows, cols]
        slab_hu = hu[ks[0] : ks[-1] + 1, rows, cols]
        px = dy * dx
        ps_a, ps_hu = _muscle(slab_hu, slab_lab, _PSOAS, px)
        pa_a, pa_hu = _muscle(slab_hu, slab_lab, _PARASPINAL, px)
        mu_a, mu_hu = _muscle(slab_hu, slab_lab, _PSOAS + _PARASPINAL, px)
        if cement:
            ps_hu = pa_hu = mu_hu = math.nan  # metal streaks corrupt the slab's HU
        records.append(
            LevelBiomarkers(
                level=level, present=True, trabecular_hu=t_hu, roi_volume_cm3=roi_mm3 / 1000,
                body_volume_cm3=float(m.sum() * voxel_mm3 / 1000),
                height_anterior_mm=g.anterior_mm, height_middle_mm=g.middle_mm,
                height_posterior_mm=g.posterior_mm, height_ref_mm=ref,
                wedge_loss=losses[0], biconcave_loss=losses[1], crush_loss=losses[2],
                genant_grade=grade, shape=shape,
                psoas_area_cm2=ps_a, paraspinal_area_cm2=pa_a, muscle_area_cm2=mu_a,
                psoas_hu=ps_hu, paraspinal_hu=pa_hu, muscle_hu=mu_hu,
                canal_hu=float((canal_hu or {}).get(level, math.nan)), flags=tuple(flags),
            )
        )  # fmt: skip
    usable = [r.trabecular_hu for r in records if r.present and math.isfinite(r.trabecular_hu)]
    l1, l3 = records[order.index("L1")], records[order.index("L3")]
    h = float(height_cm) if height_cm else math.nan
    smi = l3.muscle_area_cm2 / (h / 100.0) ** 2 if math.isfinite(h) and l3.present else math.nan
    contrast: bool | None = None
    if contrast_tag is not None or aorta_hu is not None:
        contrast = bool(contrast_tag) or (aorta_hu is not None and aorta_hu >= CONTRAST_AORTA_HU)
    flags = (["contrast"] if contrast else []) + [
        f"missing_{r.level}" for r in records if not r.present
    ]
    return Biomarkers(
        series_uid=series_uid,
        levels=tuple(records),
        mean_trabecular_hu=float(np.mean(usable)) if usable else math.nan,
        l1_trabecular_hu=l1.trabecular_hu,
        l3_muscle_area_cm2=l3.muscle_area_cm2,
        l3_muscle_hu=l3.muscle_hu,
        smi_cm2_m2=float(smi),
        height_cm=h,
        contrast=contrast,
        flags=tuple(flags),
    )
