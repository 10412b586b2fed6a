"""Psoas and paraspinal (erector spinae + multifidus) muscles by a small 2D U-Net.

The network (:mod:`engine.anatomy.muscle_net`, weights shipped in
``engine/anatomy/weights/muscles.pt``, made by ``vfrisk train-anatomy``) labels axial
slices resampled to :data:`PIXEL_MM` pixels in a fixed window around the vertebral column:
:data:`WINDOW_MM` about the centre of the labelled bodies, wide enough for the psoas
beside L4 (~100 mm from the midline) and the paraspinal muscles behind the laminae. Each
input holds the slice and its neighbours :data:`NEIGHBOUR_MM` above and below (linear
interpolation along z, so 1 mm and 5 mm slices give the same input).

It runs on slices every ~:data:`STRIDE_MM` within the labelled bodies' extent; the class
probabilities are interpolated linearly along z to the slices in between and bilinearly
in-plane back to the volume grid, then the most probable class wins (both blends are
computed only near class boundaries: elsewhere the two slices, or the four coarse
neighbours, agree, and so does any blend of them). Left is patient left (+x). The
preprocessing functions here are shared with the training
(:mod:`engine.anatomy.train_muscles`), so training and inference see the same inputs.

torch is imported inside the functions that need it: importing this module stays cheap.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from engine.errors import VfriskError
from engine.geometry import Grid

if TYPE_CHECKING:
    import torch

    from engine.anatomy.muscle_net import MuscleNet

__all__ = [
    "DEFAULT_WEIGHTS",
    "NEIGHBOUR_MM",
    "PIXEL_MM",
    "STRIDE_MM",
    "WINDOW_MM",
    "column_centre",
    "crop_labels",
    "crop_stack",
    "normalize_hu",
    "predict_probabilities",
    "label_muscles",
    "segment_muscles",
    "window_px",
]

#: In-plane pixel of the network input, mm.
PIXEL_MM = 2.0
#: Window about the body centre, mm: (row first, row last, column first, column last);
#: rows run anterior -> posterior, columns patient right -> left. 80 x 112 pixels.
WINDOW_MM = (-64.0, 96.0, -112.0, 112.0)
#: Distance of the neighbouring input slices, mm.
NEIGHBOUR_MM = 3.0
#: Spacing of the slices the network labels, mm (the ones in between are interpolated).
#: Muscles change slowly along z: 8 mm loses < 0.003 of median Dice against 4 mm on the
#: unseen-seed cohorts (bench/anatomy_accuracy.py) and halves the network's work.
STRIDE_MM = 8.0
#: HU window of the input: fat, muscle and bone cortex stay apart, air saturates.
_HU_WINDOW = (-250.0, 350.0)
_AIR_HU = -1024.0
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "muscles.pt"


def window_px(margin_px: int = 0) -> tuple[int, int]:
    """Input size (rows, columns) in pixels of :data:`WINDOW_MM`, plus a margin each side."""
    r0, r1, c0, c1 = WINDOW_MM
    return (
        int(round((r1 - r0) / PIXEL_MM)) + 2 * margin_px,
        int(round((c1 - c0) / PIXEL_MM)) + 2 * margin_px,
    )


def normalize_hu(hu: np.ndarray) -> np.ndarray:
    """HU clipped to :data:`_HU_WINDOW` and scaled to about [-2, 2] (muscle ~ 0), float32."""
    lo, hi = _HU_WINDOW
    return ((np.clip(hu, lo, hi) - 50.0) / 150.0).astype(np.float32)


def column_centre(bodies: np.ndarray) -> tuple[float, float]:
    """Centre (row j, column i) of the labelled bodies, voxel indices.

    Parameters
    ----------
    bodies : np.ndarray
        bool, shape (nz, ny, nx).

    Returns
    -------
    tuple of float
        Mean (j, i) of the body voxels.
    """
    # from the axial projection: the same mean as over the voxels, without a 3D nonzero
    return _projection_centre(bodies.sum(axis=0, dtype=np.int64))


def _projection_centre(proj: np.ndarray) -> tuple[float, float]:
    """Mean (j, i) of an axial projection (voxel counts per pixel, int64 (ny, nx))."""
    rows, cols = proj.sum(axis=1), proj.sum(axis=0)
    n = float(rows.sum())
    return float(rows @ np.arange(rows.size)) / n, float(cols @ np.arange(cols.size)) / n


def _region(grid: Grid, centre: tuple[float, float], margin_px: int) -> tuple[int, int, int, int]:
    """Native pixel box (j0, i0, rows, cols) that the window maps onto."""
    _, dy, dx = grid.spacing_zyx
    r0, r1, c0, c1 = WINDOW_MM
    m = margin_px * PIXEL_MM
    j0 = int(round(centre[0] + (r0 - m) / dy))
    i0 = int(round(centre[1] + (c0 - m) / dx))
    return j0, i0, int(round((r1 - r0 + 2 * m) / dy)), int(round((c1 - c0 + 2 * m) / dx))


def _extract(vol: np.ndarray, ks: np.ndarray, box: tuple[int, int, int, int], fill: float):
    """``vol[ks]`` in the native box, ``fill`` outside the volume; shape (len(ks), h, w)."""
    j0, i0, h, w = box
    _, ny, nx = vol.shape
    out = np.full((len(ks), h, w), fill, vol.dtype)
    a0, a1 = max(0, j0), min(ny, j0 + h)
    b0, b1 = max(0, i0), min(nx, i0 + w)
    if a1 > a0 and b1 > b0:
        out[:, a0 - j0 : a1 - j0, b0 - i0 : b1 - i0] = vol[ks, a0:a1, b0:b1]
    return out


def _resize(x: np.ndarray, size: tuple[int, int], antialias: bool) -> np.ndarray:
    """Bilinear resize of (n, c, h, w) float32 to (n, c, *size) (pixel areas aligned)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    return F.interpolate(
        t, size=size, mode="bilinear", align_corners=False, antialias=antialias
    ).numpy()


def crop_stack(
    hu: np.ndarray,
    grid: Grid,
    ks: np.ndarray,
    centre: tuple[float, float],
    margin_px: int = 0,
) -> np.ndarray:
    """Network inputs for slices ``ks``: normalized 3-slice stacks in the window.

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape (nz, ny, nx), on ``grid``.
    grid : Grid
        The volume's grid.
    ks : np.ndarray
        int, shape (n,): slices to label.
    centre : tuple of float
        Body centre (j, i) in voxel indices (:func:`column_centre`).
    margin_px : int
        Extra pixels each side of the window (training crops randomly inside it).

    Returns
    -------
    np.ndarray
        float32, shape (n, 3, H, W) with (H, W) = ``window_px(margin_px)``: the slices
        :data:`NEIGHBOUR_MM` below, at and above each ``k``; air outside the volume.
    """
    nz = hu.shape[0]
    dz = grid.spacing_zyx[0]
    box = _region(grid, centre, margin_px)
    # fractional slice index of each channel, clamped to the scan
    zf = np.clip(ks[:, None] + np.array([-1.0, 0.0, 1.0]) * NEIGHBOUR_MM / dz, 0, nz - 1)
    lo = np.floor(zf).astype(int)
    # a channel on a slice (weight 0 for the next one: 1 mm slices, 3 mm apart) reads one
    # slice, not two: the blend below is the same, x * 1 + y * 0 == x
    hi = np.where(zf > lo, np.minimum(lo + 1, nz - 1), lo)
    need = np.unique(np.concatenate([lo.ravel(), hi.ravel()]))
    raw = _extract(hu, need, box, _AIR_HU)
    pos = np.searchsorted(need, lo), np.searchsorted(need, hi)
    wt = (zf - lo)[..., None, None].astype(np.float32)
    stack = raw[pos[0]]  # (n, 3, h, w): raw[lo] * (1 - wt) + raw[hi] * wt, in place
    stack *= 1.0 - wt
    upper = raw[pos[1]]
    upper *= wt
    stack += upper
    return normalize_hu(_resize(stack, window_px(margin_px), antialias=True))


def crop_labels(
    labels: np.ndarray, grid: Grid, ks: np.ndarray, centre: tuple[float, float], margin_px: int
) -> np.ndarray:
    """Class index per window pixel of slices ``ks`` (training targets), int64.

    ``labels`` holds network classes 0-4 on the volume grid; each window pixel takes the
    class covering most of it (one-hot, area-weighted resize, argmax).
    """
    box = _region(grid, centre, margin_px)
    lab = _extract(labels, ks, box, 0)
    onehot = (lab[:, None] == np.arange(5)[None, :, None, None]).astype(np.float32)
    return _resize(onehot, window_px(margin_px), antialias=True).argmax(axis=1)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def _net(path: str, device: str) -> MuscleNet:
    from engine.anatomy.muscle_net import load_muscle_net

    if not Path(path).is_file():
        raise VfriskError(
            "muscle_weights_missing",
            f"the muscle network weights {path} are missing; reinstall vfrisk or make them "
            "with `vfrisk train-anatomy`",
        )
    import torch

    # channels-last: about twice the speed of oneDNN's convolutions on CPU, same results
    return load_muscle_net(path, device).to(memory_format=torch.channels_last)


def predict_probabilities(
    net: MuscleNet, x: np.ndarray, device: str | torch.device, batch: int = 64
) -> np.ndarray:
    """Softmax class probabilities, float32 of shape (n, 5, H, W), for inputs ``x``."""
    import torch

    out = []
    with torch.inference_mode():
        for s in range(0, len(x), batch):
            t = torch.from_numpy(x[s : s + batch]).to(device)
            t = t.contiguous(memory_format=torch.channels_last)
            out.append(torch.softmax(net(t).logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 5, *x.shape[2:]), np.float32)


def _argmax_channels(x: np.ndarray) -> np.ndarray:
    """``x.argmax(1)`` as uint8 (first maximum wins), by elementwise passes over the few
    channels: far faster than an argmax over a strided channel axis."""
    best = x[:, 0].copy()
    cls = np.zeros(best.shape, np.uint8)
    for c in range(1, x.shape[1]):
        cls[x[:, c] > best] = c
        np.maximum(best, x[:, c], out=best)
    return cls


def segment_muscles(
    hu: np.ndarray,
    grid: Grid,
    bodies: np.ndarray,
    k_range: tuple[int, int],
    *,
    weights: Path | str | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Muscle labels 11-14 (psoas left/right, paraspinal left/right) on the volume grid.

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape (nz, ny, nx).
    grid : Grid
        Its grid.
    bodies : np.ndarray
        bool, shape (nz, ny, nx): the labelled vertebral bodies.
    k_range : tuple of int
        Slices ``[k0, k1)`` to label (the cranio-caudal extent of the labelled bodies).
    weights : Path or str, optional
        Network file (default :data:`DEFAULT_WEIGHTS`, shipped with the package).
    device : str, optional
        ``"cpu"`` or ``"cuda"``; default CUDA when available, else CPU.

    Returns
    -------
    np.ndarray
        uint8, shape (nz, ny, nx): 11 iliopsoas_left, 12 iliopsoas_right,
        13 autochthon_left, 14 autochthon_right, 0 elsewhere (and on the bodies).

    Raises
    ------
    VfriskError
        ``muscle_weights_missing`` when the weights file is absent.
    """
    out = np.zeros(grid.shape_zyx, np.uint8)
    k0, k1 = k_range
    if k1 <= k0 or not bodies.any():
        return out
    centre = column_centre(bodies[k0:k1])
    found = _muscle_window(hu, grid, centre, k_range, weights=weights, device=device)
    if found is not None:
        box, sub = found
        sub[bodies[box]] = 0
        out[box] = sub
    return out


def label_muscles(
    hu: np.ndarray,
    grid: Grid,
    labels: np.ndarray,
    body_crop: np.ndarray,
    crop: tuple[slice, slice],
    *,
    weights: Path | str | None = None,
    device: str | None = None,
) -> None:
    """Add the muscles to the segmenter's label map, in place (:func:`segment_muscles`
    without a pass over the whole volume: the bodies are given on their crop).

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape (nz, ny, nx).
    grid : Grid
    labels : np.ndarray
        uint8, shape (nz, ny, nx), the bodies already labelled; muscle ids 11-14 are
        written where it is 0, within the bodies' cranio-caudal extent.
    body_crop : np.ndarray
        uint8, shape (nz, rows, cols): ``labels[:, rows, cols]`` (non-zero on the bodies).
    crop : tuple of slice
        (rows, cols) of ``body_crop`` in the volume.
    weights, device
        As :func:`segment_muscles`.
    """
    along_z = np.flatnonzero(body_crop.any(axis=(1, 2)))
    if along_z.size == 0:
        return
    k0, k1 = int(along_z[0]), int(along_z[-1]) + 1
    proj = np.zeros(grid.shape_zyx[1:], np.int64)
    proj[crop] = (body_crop[k0:k1] > 0).sum(axis=0, dtype=np.int64)
    found = _muscle_window(hu, grid, _projection_centre(proj), (k0, k1), weights=weights,
                           device=device)  # fmt: skip
    if found is not None:
        box, sub = found
        target = labels[box]
        np.copyto(target, sub, where=target == 0)


def _muscle_window(
    hu: np.ndarray,
    grid: Grid,
    centre: tuple[float, float],
    k_range: tuple[int, int],
    *,
    weights: Path | str | None,
    device: str | None,
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Muscle labels in the network's window over slices ``k_range``: (box, uint8 labels
    of the box's shape), or None when the window misses the volume."""
    from engine.anatomy.muscle_net import CLASS_LABELS

    k0, k1 = k_range
    device = device or _default_device()
    net = _net(str(weights or DEFAULT_WEIGHTS), device)
    dz = grid.spacing_zyx[0]
    step = max(1, int(round(STRIDE_MM / dz)))
    ks = np.arange(k0, k1, step)
    if ks[-1] != k1 - 1:
        ks = np.append(ks, k1 - 1)
    j0, i0, h, w = _region(grid, centre, 0)
    _, ny, nx = grid.shape_zyx
    a0, a1, b0, b1 = max(0, j0), min(ny, j0 + h), max(0, i0), min(nx, i0 + w)
    if a1 <= a0 or b1 <= b0:
        return None
    prob = predict_probabilities(net, crop_stack(hu, grid, ks, centre), device)
    # each native slice: linear blend of the two processed slices around it
    kk = np.arange(k0, k1)
    hi = np.clip(np.searchsorted(ks, kk), 1, len(ks) - 1) if len(ks) > 1 else np.zeros_like(kk)
    lo = np.maximum(hi - 1, 0)
    t = np.clip((kk - ks[lo]) / np.maximum(ks[hi] - ks[lo], 1), 0.0, 1.0).astype(np.float32)
    lut = np.array(CLASS_LABELS, np.uint8)
    blend = _Blend(np.ascontiguousarray(prob.transpose(0, 2, 3, 1)), lo, hi, t)
    out = _upsample_argmax(blend, (h, w), (a0 - j0, a1 - j0), (b0 - i0, b1 - i0), lut)
    return (slice(k0, k1), slice(a0, a1), slice(b0, b1)), out


def _source_index(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output pixel, the two input pixels and the weight of the second, as
    ``F.interpolate(mode="bilinear", align_corners=False)`` computes them (float32)."""
    scale = np.float32(n_in / n_out)
    src = np.arange(n_out, dtype=np.float32) + np.float32(0.5)
    src = np.maximum(scale * src - np.float32(0.5), np.float32(0.0))
    i0 = src.astype(np.int64)
    return i0, np.where(i0 < n_in - 1, i0 + 1, i0), (src - i0).astype(np.float32)


class _Blend(NamedTuple):
    """Class probabilities of the native slices, kept as the blend of the processed ones:
    slice ``k`` is ``prob[lo[k]] * (1 - t[k]) + prob[hi[k]] * t[k]``.

    Attributes
    ----------
    prob : np.ndarray
        float32, shape (n, H, W, classes), C-contiguous: the processed slices, a pixel's
        classes together.
    lo, hi : np.ndarray
        int64, shape (m,): the processed slices around each native slice.
    t : np.ndarray
        float32, shape (m,): the weight of ``hi``.
    """

    prob: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    t: np.ndarray

    def at(self, k: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Blended probabilities of native pixels (k, r, c) (int arrays, shape (q,)):
        float32, shape (q, classes), computed as the whole blend would compute them."""
        n, h, w, classes = self.prob.shape
        pixels = self.prob.reshape(n * h * w, classes)  # one flat index: faster gathers
        t = self.t[k][:, None]
        a = pixels[(self.lo[k] * h + r) * w + c]
        b = pixels[(self.hi[k] * h + r) * w + c]
        return a * (1.0 - t) + b * t

    def argmax(self) -> np.ndarray:
        """Class index (first maximum) of every native slice's coarse pixels, uint8 of
        shape (m, H, W), blending only where the two processed slices disagree.

        A blend is a convex combination: the class that is the (first) maximum in both
        processed slices is the maximum of the blend too, so only the pixels whose class
        changes between them (a muscle's edge moving along z) need the blend.
        """
        cls = _argmax_channels(np.moveaxis(self.prob, 3, 1))
        out = cls[self.lo]
        kq, rq, cq = np.nonzero(out != cls[self.hi])
        if kq.size:
            out[kq, rq, cq] = _argmax_channels(self.at(kq, rq, cq)[:, :, None, None])[:, 0, 0]
        return out


def _upsample_argmax(
    blend: _Blend,
    size: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    lut: np.ndarray,
) -> np.ndarray:
    """``lut[F.interpolate(prob, size, "bilinear").argmax(1)[:, r0:r1, c0:c1]]`` of the
    blended probabilities ``prob``, interpolating only where the answer is not already
    known.

    A native pixel is a convex combination of its four coarse neighbours; when one class
    is the (first) maximum at all four, it is the maximum of the combination too. So a
    pixel whose four neighbours agree takes their class, and the bilinear probabilities
    are computed only for the pixels where they disagree (near a muscle's edge: a few
    percent of the window).

    Parameters
    ----------
    blend : _Blend
        The native slices' coarse probabilities (H x W, classes).
    size : tuple of int
        Full output size (h, w) of the interpolation.
    rows, cols : tuple of int
        The part ``[r0, r1)`` x ``[c0, c1)`` of the output to return.
    lut : np.ndarray
        uint8, shape (classes,): the label of each class (never 255).
    """
    _, n_h, n_w, _ = blend.prob.shape
    y0, y1, wy = (a[rows[0] : rows[1]] for a in _source_index(n_h, size[0]))
    x0, x1, wx = (a[cols[0] : cols[1]] for a in _source_index(n_w, size[1]))
    coarse = blend.argmax()  # the window is 80 x 112: at least 2 x 2
    same_x = coarse[:, :, :-1] == coarse[:, :, 1:]
    agree = same_x[:, :-1] & same_x[:, 1:] & (coarse[:, :-1, :-1] == coarse[:, 1:, :-1])
    code = np.where(agree, lut[coarse[:, :-1, :-1]], np.uint8(255))
    # pixel -> the coarse cell whose corners hold its neighbours (clamped at the far edge)
    cell_y, cell_x = np.minimum(y0, n_h - 2), np.minimum(x0, n_w - 2)
    out = np.take(np.take(code, cell_y, axis=1), cell_x, axis=2)
    kc, yc, xc = np.nonzero(code == 255)
    # the native pixels of each undecided cell: a block of rows by columns (cell_y and
    # cell_x do not decrease), listed cell by cell without a search of the native window
    first_y = np.searchsorted(cell_y, np.arange(n_h))
    first_x = np.searchsorted(cell_x, np.arange(n_w))
    n_r, n_c = np.diff(first_y)[yc], np.diff(first_x)[xc]
    keep = n_r * n_c > 0
    kc, yc, xc, n_r, n_c = kc[keep], yc[keep], xc[keep], n_r[keep], n_c[keep]
    if kc.size:
        # the blended probabilities at the four corners of each undecided cell, once per
        # cell (about ten native pixels share one); a pixel's neighbours are corners of
        # its cell (at the far edge both neighbours are the cell's last row or column).
        # Rows are gathered by one flat index each (cell, corner row, corner column).
        classes = blend.prob.shape[3]
        corners = np.stack([blend.at(kc, yc + a, xc + b) for a in (0, 1) for b in (0, 1)], 1)
        corners = corners.reshape(kc.size * 4, classes)
        # interpolated along x first, per cell and native column (the cell's native rows
        # share it): both corner rows, shape (pairs, 2, classes)
        pair = np.repeat(np.arange(kc.size), n_c)
        col = first_x[xc][pair] + np.arange(pair.size) - np.repeat(np.cumsum(n_c) - n_c, n_c)
        cx, tx = xc[pair], wx[col][:, None]
        c0, c1 = x0[col] - cx, x1[col] - cx
        along_x = np.empty((pair.size, 2, classes), np.float32)
        for row in (0, 1):
            first = 4 * pair + 2 * row
            along_x[:, row] = corners[first + c0] * (1.0 - tx) + corners[first + c1] * tx
        along_x = along_x.reshape(pair.size * 2, classes)
        # then along y, per native pixel: (cell, row, column) listed cell by cell
        n_px = n_r * n_c
        cell = np.repeat(np.arange(kc.size), n_px)
        off = np.arange(int(n_px.sum())) - np.repeat(np.cumsum(n_px) - n_px, n_px)
        kq = kc[cell]
        rq = first_y[yc][cell] + off // n_c[cell]
        cq = first_x[xc][cell] + off % n_c[cell]
        px_pair = np.repeat(np.cumsum(n_c) - n_c, n_px) + off % n_c[cell]
        cy = yc[cell]
        r0, r1 = y0[rq] - cy, y1[rq] - cy
        ty = wy[rq][:, None]
        v = along_x[2 * px_pair + r0] * (1.0 - ty) + along_x[2 * px_pair + r1] * ty
        out[kq, rq, cq] = lut[_argmax_channels(v[:, :, None, None])[:, 0, 0]]
    return out
