"""Quality assurance of a segmentation: plausibility flags and one PNG per series.

Flags (:func:`qa_flags`), each a stable string:

- ``qa_body_volume_<LEVEL>``: a body's volume outside ``BODY_VOLUME_CM3`` (adult T12-L4
  bodies hold about 15-45 cm3; a severe crush fracture still keeps ~8);
- ``qa_muscle_area_<LEVEL>``: psoas + paraspinal area at the level outside
  ``MUSCLE_AREA_CM2`` (both sides; L3 total skeletal muscle of adults ~100-170 cm2 of which
  psoas and paraspinal are about half; at T12 the psoas has barely begun);
- ``qa_levels_order``: the bodies' centroids are not in cranio-caudal order T12 > L1 > ... >
  L4 along z, or two neighbours lie further than ``MAX_LEVEL_STEP_MM`` apart or overlap.

The PNG (:func:`qa_png`, pillow only): on the left a sagittal reformat through the spine
(bone window) with each body outlined and labelled with its level; on the right one axial
slice per level through the body's centre, with the body and the four muscles outlined.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.anatomy._boxes import Box
from engine.anatomy.labels import BODY_LEVELS, MUSCLE_LABELS, Segmentation

__all__ = [
    "BODY_VOLUME_CM3",
    "MAX_LEVEL_STEP_MM",
    "MUSCLE_AREA_CM2",
    "qa_flags",
    "qa_png",
]

BODY_VOLUME_CM3 = (8.0, 70.0)
MUSCLE_AREA_CM2 = (5.0, 200.0)
MAX_LEVEL_STEP_MM = 50.0
_WINDOW = (-200.0, 1000.0)
_COLOURS = {
    1: (230, 25, 75),
    2: (60, 180, 75),
    3: (255, 225, 25),
    4: (0, 130, 200),
    5: (245, 130, 48),
    11: (145, 30, 180),
    12: (70, 240, 240),
    13: (240, 50, 230),
    14: (210, 245, 60),
}
_PANEL = 256  # px, height of each axial panel and of the sagittal view
# The picture is a palette image (one byte per pixel: about 3x faster to encode than RGB
# and a third smaller): indices 0 .. _GREYS - 1 are the grey ramp, then the label colours
# and the few colours of the text and empty panels.
_GREYS = 240
_INK = {lid: _GREYS + n for n, lid in enumerate(_COLOURS)}
_TEXT = {"white": (255, 255, 255), "yellow": (255, 255, 0), "alarm": (255, 120, 120),
         "fine": (160, 220, 160), "empty": (40, 40, 40)}  # fmt: skip
_INK.update({name: _GREYS + len(_COLOURS) + n for n, name in enumerate(_TEXT)})
_PALETTE = [round(g * 255 / (_GREYS - 1)) for g in range(_GREYS) for _ in range(3)] + [
    v for rgb in (*_COLOURS.values(), *_TEXT.values()) for v in rgb
]
_MUSCLES = tuple(sorted(MUSCLE_LABELS))


def qa_flags(segmentation: Segmentation) -> tuple[str, ...]:
    """Plausibility flags of a segmentation (definitions in the module doc)."""
    grid = segmentation.grid
    labels = segmentation.labels
    dz, dy, dx = grid.spacing_zyx
    flags = []
    centres = {}
    boxes = segmentation.boxes  # each body in its box, muscles in theirs
    rows, cols = _muscle_plane(boxes)
    for i, level in BODY_LEVELS.items():
        if i not in boxes:
            continue
        box = boxes[i]
        per_slice = (labels[box] == i).sum(axis=(1, 2), dtype=np.int64)
        n = int(per_slice.sum())
        volume = n * dz * dy * dx / 1000.0
        if not BODY_VOLUME_CM3[0] <= volume <= BODY_VOLUME_CM3[1]:
            flags.append(f"qa_body_volume_{level}")
        k0, k1 = box[0].start, box[0].stop  # the body's first and one-past-last slice
        slab = labels[k0:k1, rows, cols]
        area = np.isin(slab, _MUSCLES).sum(axis=(1, 2)).mean() * dy * dx / 100.0
        if not MUSCLE_AREA_CM2[0] <= area <= MUSCLE_AREA_CM2[1]:
            flags.append(f"qa_muscle_area_{level}")
        centres[i] = (k0, k1 - 1, _mean_index(per_slice) + k0)
    ids = sorted(centres)  # cranial level first: T12 = 1
    for a, b in zip(ids, ids[1:], strict=False):
        za, zb = centres[a][2] * dz, centres[b][2] * dz
        if not 0 < za - zb <= MAX_LEVEL_STEP_MM * (b - a):
            flags.append("qa_levels_order")
            break
    return tuple(flags)


def _muscle_plane(boxes: dict[int, Box]) -> tuple[slice, slice]:
    """(rows, cols) holding every muscle voxel (empty when there is none)."""
    found = [boxes[m] for m in _MUSCLES if m in boxes]
    if not found:
        return slice(0, 0), slice(0, 0)
    return (
        slice(min(b[1].start for b in found), max(b[1].stop for b in found)),
        slice(min(b[2].start for b in found), max(b[2].stop for b in found)),
    )


def _mean_index(counts: np.ndarray) -> float:
    """Mean index of voxels counted per index (== ``np.argwhere(mask)[:, a].mean()``)."""
    return float(int(counts @ np.arange(counts.size, dtype=np.int64)) / int(counts.sum()))


def _median_index(counts: np.ndarray) -> float:
    """Median index of voxels counted per index (== ``np.median`` of their indices)."""
    n = int(counts.sum())
    cum = np.cumsum(counts)
    lo = int(np.searchsorted(cum, (n - 1) // 2, side="right"))
    hi = int(np.searchsorted(cum, n // 2, side="right"))
    return (lo + hi) / 2.0


def _grey(hu: np.ndarray) -> np.ndarray:
    """Palette index of the bone window's grey: 0 (black) .. ``_GREYS - 1`` (white)."""
    lo, hi = _WINDOW
    return np.rint(np.clip((hu - lo) / (hi - lo), 0.0, 1.0) * (_GREYS - 1)).astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:-1, 1:-1] = (
        mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    )
    return mask & ~inner


def qa_png(
    hu: np.ndarray,
    segmentation: Segmentation,
    path: Path | str,
    *,
    title: str = "",
    flags: tuple[str, ...] = (),
) -> Path:
    """Write the QA picture of one series.

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape ``segmentation.grid.shape_zyx``.
    segmentation : Segmentation
    path : path-like
        PNG file to write (parents created).
    title : str, optional
        Printed at the top (e.g. the series UID).
    flags : tuple of str, optional
        QA flags to print under the title.

    Returns
    -------
    Path
    """
    from PIL import Image, ImageDraw

    def draw_on(image: Image.Image) -> ImageDraw.ImageDraw:
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1"  # no anti-aliasing: text pixels stay palette colours
        return draw

    grid = segmentation.grid
    labels = segmentation.labels
    dz, dy, dx = grid.spacing_zyx
    boxes = segmentation.boxes
    body_boxes = {i: boxes[i] for i in BODY_LEVELS if i in boxes}
    i_mid = hu.shape[2] // 2
    if body_boxes:  # the median column of the body voxels: the mid-sagittal plane
        union = tuple(
            slice(min(b[a].start for b in body_boxes.values()),
                  max(b[a].stop for b in body_boxes.values()))
            for a in range(3)
        )  # fmt: skip
        per_col = np.isin(labels[union], list(body_boxes)).sum(axis=(0, 1), dtype=np.int64)
        i_mid = int(_median_index(per_col) + union[2].start)
    # sagittal: rows = z (head up), columns = y (anterior left), isotropic pixels; each
    # body outlined in its level's colour
    h_mm, w_mm = hu.shape[0] * dz, hu.shape[1] * dy
    scale = 2 * _PANEL / h_mm  # the sagittal view is two panels high
    size = (max(1, round(w_mm * scale)), 2 * _PANEL)
    sag = np.asarray(
        Image.fromarray(_grey(hu[::-1, :, i_mid])).resize(size, Image.Resampling.BILINEAR)
    ).copy()
    lab = np.asarray(Image.fromarray(labels[::-1, :, i_mid]).resize(size, Image.Resampling.NEAREST))
    for i in BODY_LEVELS:
        sag[_outline(lab == i)] = _INK[i]
    sag_img = Image.fromarray(sag)
    draw = draw_on(sag_img)
    for i, level in BODY_LEVELS.items():
        pts = np.argwhere(lab == i)
        if pts.size:
            r, c = pts.mean(axis=0)
            draw.text((c + 4, r - 6), level, fill=_INK["white"])
    axials = []
    for i, level in BODY_LEVELS.items():
        if i not in body_boxes:
            panel = Image.new("L", (_PANEL, _PANEL), _INK["empty"])
            draw_on(panel).text((8, 8), f"{level}: absent", fill=_INK["white"])
            axials.append(panel)
            continue
        box = body_boxes[i]
        per_slice = (labels[box] == i).sum(axis=(1, 2), dtype=np.int64)
        k = int(round(_mean_index(per_slice) + box[0].start))
        ink = _grey(hu[k])
        for lid in (i, 11, 12, 13, 14):
            ink[_outline(labels[k] == lid)] = _INK[lid]
        panel = Image.fromarray(ink).resize(
            (round(_PANEL * hu.shape[2] * dx / (hu.shape[1] * dy)), _PANEL),
            Image.Resampling.NEAREST,
        )
        draw_on(panel).text((6, 6), f"{level} (slice {k})", fill=_INK["yellow"])
        axials.append(panel)
    cols = 3
    cell_w = max(p.width for p in axials)
    grid_w = cols * cell_w
    header = 36
    canvas = Image.new("L", (sag_img.width + grid_w + 8, 2 * _PANEL + header), 0)
    canvas.paste(sag_img, (0, header))
    for n, panel in enumerate(axials):
        r, c = divmod(n, cols)
        canvas.paste(panel, (sag_img.width + 8 + c * cell_w, header + r * _PANEL))
    draw = draw_on(canvas)
    draw.text((6, 4), title or "vfrisk QA", fill=_INK["white"])
    draw.text(
        (6, 18), "flags: " + (", ".join(flags) if flags else "none"),
        fill=_INK["alarm"] if flags else _INK["fine"],
    )  # fmt: skip
    canvas.putpalette(_PALETTE)  # the indices drawn above become colours: a "P" image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, compress_level=1)  # 5-10x faster than the default 6, same pixels
    return path
