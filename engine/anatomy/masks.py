"""Import TotalSegmentator masks (``--masks DIR``) as a :class:`Segmentation`.

Layout accepted under ``DIR`` for a series ``UID`` (first match wins):

1. ``DIR/UID/`` holding one file per structure, as ``TotalSegmentator -o DIR/UID`` writes
   them: ``vertebrae_T12.nii.gz`` .. ``vertebrae_L4.nii.gz``, ``autochthon_left.nii.gz``,
   ``autochthon_right.nii.gz``, ``iliopsoas_left.nii.gz``, ``iliopsoas_right.nii.gz``;
2. ``DIR/UID/`` holding a single ``.nii``/``.nii.gz`` file, or ``DIR/UID.nii.gz``: one
   multilabel map with TotalSegmentator v2 ``total`` ids (``--ml``), see
   :data:`TOTALSEG_IDS`.

Masks must lie on the CT's grid (TotalSegmentator writes them on its input's grid). A mask
on another grid covering the same field of view (same physical extent within half a
voxel, e.g. saved at another resolution) is resampled by nearest neighbour; any other
grid (shifted origin, other size) is refused with ``masks_misaligned`` naming the file,
because it belongs to another series or was cropped. A missing structure file or folder
is ``masks_missing``.

TotalSegmentator's vertebra masks hold the whole vertebra; the study's model reads the
vertebral body only (Kong et al. 2025 drop the posterior elements with a 2D U-Net). The
rule here (:func:`vertebral_body`): per axial slice, the spinal canal is the hole that
the vertebral arch closes around (a hole of the filled 2D mask of at least
``_CANAL_MIN_MM2`` whose centre lies at least ``_CANAL_BEHIND_MM`` behind the centroid of
the slice's mask, so that a ring-shaped endplate is not taken for it); its anterior edge
is fitted as a straight line in z over the slices where the canal is seen (the canal runs
along the spine), and the body is the part of the mask anterior to that line, keeping
the largest 3D connected component. A vertebra whose arch never closes (no canal found)
keeps, per slice, the most anterior connected component.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.anatomy.labels import BODY_LEVELS, MUSCLE_LABELS, Segmentation
from engine.errors import VfriskError
from engine.geometry import Grid

__all__ = [
    "STRUCTURES",
    "TOTALSEG_IDS",
    "find_masks",
    "load_masks",
    "segmentation_from_totalseg",
    "vertebral_body",
]

#: TotalSegmentator v2 ``total`` class ids of the structures vfrisk reads.
TOTALSEG_IDS: dict[str, int] = {
    "vertebrae_T12": 32,
    "vertebrae_L1": 31,
    "vertebrae_L2": 30,
    "vertebrae_L3": 29,
    "vertebrae_L4": 28,
    "autochthon_left": 86,
    "autochthon_right": 87,
    "iliopsoas_left": 88,
    "iliopsoas_right": 89,
}
#: TotalSegmentator structure name -> vfrisk label id (bodies 1..5, muscles 11..14).
STRUCTURES: dict[str, int] = {
    **{f"vertebrae_{level}": i for i, level in BODY_LEVELS.items()},
    **{name: i for i, name in MUSCLE_LABELS.items()},
}
_CANAL_MIN_MM2 = 30.0  # a lumbar canal is ~15 x 20 mm; smaller holes are noise
_CANAL_BEHIND_MM = 5.0  # canal centre behind the centroid of the slice's mask
_SUFFIXES = (".nii.gz", ".nii")


def _structure_file(folder: Path, name: str) -> Path | None:
    for suffix in _SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def find_masks(masks_dir: Path | str, series_uid: str) -> dict[str, Path] | Path:
    """Locate the masks of one series.

    Parameters
    ----------
    masks_dir : path-like
        The ``--masks`` folder.
    series_uid : str
        SeriesInstanceUID of the CT.

    Returns
    -------
    dict or Path
        ``{structure name: file}`` for per-structure files, or the multilabel file.

    Raises
    ------
    VfriskError
        ``masks_missing`` naming what was looked for.
    """
    root = Path(masks_dir)
    folder = root / series_uid
    if folder.is_dir():
        found = {name: _structure_file(folder, name) for name in STRUCTURES}
        if any(found.values()):
            missing = [name for name, path in found.items() if path is None]
            if missing:
                raise VfriskError(
                    "masks_missing",
                    f"{folder} lacks {', '.join(f'{m}.nii.gz' for m in missing)}; run "
                    "TotalSegmentator's 'total' task on this series (all structures)",
                )
            return {name: path for name, path in found.items() if path is not None}
        niftis = sorted(p for p in folder.iterdir() if p.name.lower().endswith(_SUFFIXES))
        if len(niftis) == 1:
            return niftis[0]
        raise VfriskError(
            "masks_missing",
            f"{folder} holds {len(niftis)} NIfTI files but none named vertebrae_T12.nii.gz, "
            "...; expected per-structure files or exactly one multilabel file",
        )
    for suffix in _SUFFIXES:
        path = root / f"{series_uid}{suffix}"
        if path.is_file():
            return path
    raise VfriskError(
        "masks_missing",
        f"no masks for series {series_uid} under {root}: expected a folder {folder} "
        f"(TotalSegmentator output) or a file {root / (series_uid + '.nii.gz')}",
    )


def _on_grid(path: Path, grid: Grid) -> np.ndarray:
    """A label file's ids on ``grid`` (uint8), refusing another field of view."""
    from engine.load.nifti import load_nifti

    vol = load_nifti(path, labels=True)
    g = vol.grid
    data = np.rint(vol.hu)
    if g.shape_zyx == grid.shape_zyx and np.allclose(g.spacing_zyx, grid.spacing_zyx, atol=1e-3):
        offset = np.abs(np.subtract(g.origin_xyz, grid.origin_xyz))
        if np.all(offset <= 0.05 * np.array(grid.spacing_zyx[::-1])):
            return data.astype(np.uint8)
    # same physical extent (voxel edges) within half a voxel: resample, else refuse
    lo_m = np.array(g.origin_xyz) - 0.5 * np.array(g.spacing_zyx[::-1])
    hi_m = lo_m + np.array(g.spacing_zyx[::-1]) * np.array(g.shape_zyx[::-1])
    lo_c = np.array(grid.origin_xyz) - 0.5 * np.array(grid.spacing_zyx[::-1])
    hi_c = lo_c + np.array(grid.spacing_zyx[::-1]) * np.array(grid.shape_zyx[::-1])
    tol = 0.5 * np.maximum(np.array(g.spacing_zyx[::-1]), np.array(grid.spacing_zyx[::-1]))
    if np.any(np.abs(lo_m - lo_c) > tol) or np.any(np.abs(hi_m - hi_c) > tol):
        mask_at = tuple(round(v, 2) for v in g.origin_xyz)
        ct_at = tuple(round(v, 2) for v in grid.origin_xyz)
        raise VfriskError(
            "masks_misaligned",
            f"{path} lies on another grid than the CT (mask origin {mask_at} mm, shape "
            f"{g.shape_zyx}; CT origin {ct_at} mm, shape {grid.shape_zyx}); segment this very "
            "series and pass its masks",
        )
    # nearest neighbour: CT voxel centre -> mask index
    idx = [
        np.clip(np.rint((ax - o) / s).astype(int), 0, n - 1)
        for ax, o, s, n in (
            (grid.axis_z(), g.origin_xyz[2], g.spacing_zyx[0], g.shape_zyx[0]),
            (grid.axis_y(), g.origin_xyz[1], g.spacing_zyx[1], g.shape_zyx[1]),
            (grid.axis_x(), g.origin_xyz[0], g.spacing_zyx[2], g.shape_zyx[2]),
        )
    ]
    return data[np.ix_(*idx)].astype(np.uint8)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def vertebral_body(vertebra: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """The vertebral body of a whole-vertebra mask (posterior elements removed).

    Parameters
    ----------
    vertebra : np.ndarray
        bool, shape (nz, ny, nx): one vertebra (body + arch + processes), canonical grid
        (row ``j`` towards posterior).
    spacing_zyx : tuple of float
        Voxel spacing (mm).

    Returns
    -------
    np.ndarray
        bool, same shape: the part anterior to the spinal canal (rule in the module doc).
    """
    from scipy import ndimage

    body = np.zeros_like(vertebra, dtype=bool)
    ks = np.flatnonzero(vertebra.any(axis=(1, 2)))
    if ks.size == 0:
        return body
    px_mm2 = spacing_zyx[1] * spacing_zyx[2]
    fronts_k, fronts_j = [], []
    for k in ks:
        sl = vertebra[k]
        holes, n = ndimage.label(ndimage.binary_fill_holes(sl) & ~sl)
        if n == 0:
            continue
        sizes = np.bincount(holes.ravel())[1:]
        best = int(sizes.argmax())
        if sizes[best] * px_mm2 < _CANAL_MIN_MM2:
            continue
        rows = np.nonzero(holes == best + 1)[0]
        # the canal lies well behind the slice's bone; a hole at the mask's own centre is
        # the concave centre of an endplate seen as a ring, not the canal
        if (rows.mean() - np.nonzero(sl)[0].mean()) * spacing_zyx[1] < _CANAL_BEHIND_MM:
            continue
        fronts_k.append(k)
        fronts_j.append(rows.min())
    if fronts_k:
        if len(set(fronts_k)) >= 2:
            slope, icpt = np.polyfit(fronts_k, fronts_j, 1)
        else:
            slope, icpt = 0.0, float(fronts_j[0])
        rows = np.arange(vertebra.shape[1])
        for k in ks:
            front = slope * k + icpt
            body[k] = vertebra[k] & (rows[:, None] < front)
        return _largest_component(body)
    for k in ks:  # no closed arch: the most anterior component of each slice
        lab, n = ndimage.label(vertebra[k])
        if n == 0:
            continue
        rows = ndimage.mean(
            np.arange(vertebra.shape[1])[:, None] * np.ones_like(lab), lab, range(1, n + 1)
        )
        body[k] = lab == int(np.argmin(rows)) + 1
    return _largest_component(body)


def segmentation_from_totalseg(totalseg: np.ndarray, grid: Grid) -> Segmentation:
    """Build a :class:`Segmentation` from a TotalSegmentator v2 label map on the CT grid.

    Parameters
    ----------
    totalseg : np.ndarray
        Integer ids of :data:`TOTALSEG_IDS` (others ignored), shape ``grid.shape_zyx``.
    grid : Grid
        The CT's grid.

    Returns
    -------
    Segmentation
        ``source='masks'``; bodies (posterior elements removed) 1..5, muscles 11..14;
        ``flags`` name each level without a vertebra (``missing_T12``, ...).
    """
    labels = np.zeros(grid.shape_zyx, dtype=np.uint8)
    for name, ours in STRUCTURES.items():
        if ours in MUSCLE_LABELS:
            labels[totalseg == TOTALSEG_IDS[name]] = ours
    for name, ours in STRUCTURES.items():
        if ours not in BODY_LEVELS:
            continue
        whole = totalseg == TOTALSEG_IDS[name]
        if not whole.any():
            continue
        ks, js, is_ = (np.flatnonzero(whole.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
        box = (slice(ks[0], ks[-1] + 1), slice(js[0], js[-1] + 1), slice(is_[0], is_[-1] + 1))
        body = vertebral_body(whole[box], grid.spacing_zyx)
        labels[box][body] = ours
    return _segmentation(labels, grid)


def _segmentation(labels: np.ndarray, grid: Grid) -> Segmentation:
    present = set(np.unique(labels).tolist())
    levels = tuple(level for i, level in BODY_LEVELS.items() if i in present)
    flags = tuple(f"missing_{level}" for i, level in BODY_LEVELS.items() if i not in present)
    return Segmentation(labels=labels, grid=grid, levels=levels, flags=flags, source="masks")


def load_masks(masks_dir: Path | str, series_uid: str, grid: Grid) -> Segmentation:
    """Read a series' TotalSegmentator masks onto its CT grid.

    Parameters
    ----------
    masks_dir : path-like
        The ``--masks`` folder (layouts in the module doc).
    series_uid : str
        SeriesInstanceUID of the CT.
    grid : Grid
        The loaded CT's grid (``Volume.grid``).

    Returns
    -------
    Segmentation
        ``source='masks'``.

    Raises
    ------
    VfriskError
        ``masks_missing`` (no folder/file, or a structure file absent), ``masks_misaligned``
        (a file on another field of view), ``bad_nifti`` (unreadable file).
    """
    found = find_masks(masks_dir, series_uid)
    if isinstance(found, Path):
        return segmentation_from_totalseg(_on_grid(found, grid), grid)
    totalseg = np.zeros(grid.shape_zyx, dtype=np.uint8)
    for name, path in found.items():
        totalseg[_on_grid(path, grid) > 0] = TOTALSEG_IDS[name]
    return segmentation_from_totalseg(totalseg, grid)
