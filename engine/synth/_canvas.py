"""Painting primitives of the phantom: the canvas, local frames and signed distance fields.

Every structure is an approximate signed distance field (in voxel units, so that partial
volume follows the voxel footprint along the surface normal, slice thickness included),
evaluated only inside its bounding box (``Grid.index_box``). Occupancy is the linear ramp
``clip(0.5 - sdf, 0, 1)``; structures are composited in painter's order in float32 and a
voxel takes a structure's label where its occupancy is at least 0.5.

Large boxes are evaluated in chunks of a few slices (``zchunks``): the temporaries then
stay small and in cache, and are recycled by the allocator instead of being page-faulted
afresh, which dominated the cost of rendering a full 512 x 512 x 300 volume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from engine.geometry import Grid
from engine.synth._pool import empty_f32

__all__ = [
    "AIR",
    "Canvas",
    "Local",
    "box_sdf",
    "ellipse",
    "ellipsoid",
    "local",
    "ramp",
    "tube",
    "zchunks",
]

AIR = -1000.0  #: HU of air
_CHUNK_VOXELS = 1 << 19  # ~2 MB of float32 per temporary


class Canvas:
    """The volumes being painted and the grid they live on."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.hu = empty_f32(grid.shape_zyx)  # every voxel is written by the torso
        # calloc'd: pages never painted (most of ``bodies``) are never touched
        self.labels = np.zeros(grid.shape_zyx, np.uint8)
        self.bodies = np.zeros(grid.shape_zyx, np.uint8)
        self.x = grid.axis_x().astype(np.float32)
        self.y = grid.axis_y().astype(np.float32)
        self.z = grid.axis_z().astype(np.float32)

    def paint(
        self,
        box: tuple[slice, ...],
        occ: np.ndarray,
        value: float | np.ndarray,
        label: int = 0,
        body: int = 0,
    ) -> None:
        """Composite ``value`` with occupancy ``occ`` (0-1) into the box, painter's order."""
        sub = self.hu[box]
        diff = np.subtract(np.float32(value) if np.isscalar(value) else value, sub)
        diff *= occ
        sub += diff
        if label or body:
            inside = np.broadcast_to(occ >= 0.5, sub.shape)
            if label:
                np.copyto(self.labels[box], np.uint8(label), where=inside)
            if body:
                np.copyto(self.bodies[box], np.uint8(body), where=inside)


def zchunks(box: tuple[slice, slice, slice]) -> Iterator[slice]:
    """Slices along z splitting ``box`` into chunks of about ``_CHUNK_VOXELS`` voxels."""
    k, j, i = box
    step = max(1, _CHUNK_VOXELS // max(1, (j.stop - j.start) * (i.stop - i.start)))
    for k0 in range(k.start, k.stop, step):
        yield slice(k0, min(k0 + step, k.stop))


@dataclass(frozen=True)
class Local:
    """Local coordinates (mm) of a bounding box in a frame tilted about the x axis."""

    box: tuple[slice, slice, slice]
    a: np.ndarray  # (1, 1, ni): along x
    b: np.ndarray  # (nk, nj, 1): posterior, perpendicular to the axis
    c: np.ndarray  # (nk, nj, 1): along the cranial axis
    w: tuple[float, float, float]  # voxel footprint (mm) along a, b, c

    def parts(self) -> Iterator[Local]:
        """The same frame split along z into chunks (see ``zchunks``)."""
        k0 = self.box[0].start
        for ks in zchunks(self.box):
            s = slice(ks.start - k0, ks.stop - k0)
            yield Local((ks, self.box[1], self.box[2]), self.a, self.b[s], self.c[s], self.w)


def local(
    cv: Canvas,
    center: tuple[float, float, float],
    tilt: float,
    half: tuple[float, float, float],
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Local | None:
    """Local frame at ``center`` + ``offset`` (local a, b, c mm) covering +-``half``."""
    ct, st = math.cos(tilt), math.sin(tilt)
    oa, ob, oc = offset
    cx = center[0] + oa
    cy = center[1] + ob * ct - oc * st
    cz = center[2] + ob * st + oc * ct
    ha, hb, hc = half
    ys = [cy + sb * hb * ct - sc * hc * st for sb in (-1, 1) for sc in (-1, 1)]
    zs = [cz + sb * hb * st + sc * hc * ct for sb in (-1, 1) for sc in (-1, 1)]
    box = cv.grid.index_box((cx - ha, min(ys), min(zs)), (cx + ha, max(ys), max(zs)))
    if box is None:
        return None
    dy_ = (cv.y[box[1]] - np.float32(cy))[None, :, None]
    dz_ = (cv.z[box[0]] - np.float32(cz))[:, None, None]
    a = (cv.x[box[2]] - np.float32(cx))[None, None, :]
    b = dy_ * np.float32(ct) + dz_ * np.float32(st)
    c = dz_ * np.float32(ct) - dy_ * np.float32(st)
    dz, dy, dx = cv.grid.spacing_zyx
    w = (dx, math.hypot(dy * ct, dz * st), math.hypot(dy * st, dz * ct))
    return Local(box, a, b, c, w)


def ramp(sdf: np.ndarray) -> np.ndarray:
    """Occupancy of a voxel from its signed distance in voxel units (in place)."""
    sdf *= -1.0
    sdf += 0.5
    return np.clip(sdf, 0.0, 1.0, out=sdf)


def ellipse(u, v, su, sv, wu: float, wv: float) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (voxels) to the ellipse ``(u/su)^2 + (v/sv)^2 = 1``, and ``rho^2``.

    First-order estimate ``f / |grad f|`` in voxel-scaled coordinates: exact on the
    boundary, which is where partial volume needs it.
    """
    r2 = (u / su) ** 2 + (v / sv) ** 2
    g = np.sqrt((u * (wu / su**2)) ** 2 + (v * (wv / sv**2)) ** 2)
    g *= 2.0
    np.maximum(g, 1e-6, out=g)
    sdf = r2 - 1.0
    sdf /= g
    return sdf, r2


def box_sdf(p: tuple, half: tuple, w: tuple, radius: float = 0.0) -> np.ndarray:
    """Signed distance (voxels) of a (rounded) box centred at 0; ``p`` local coords mm."""
    q = [(np.abs(pi) - (hi - radius)) / wi for pi, hi, wi in zip(p, half, w, strict=True)]
    outside = np.sqrt(sum(np.maximum(qi, 0.0) ** 2 for qi in q))
    inside = np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0)
    return outside + inside - radius / min(w)


def ellipsoid(
    loc: Local, center: tuple[float, float, float], semi: tuple[float, float, float]
) -> np.ndarray:
    """Occupancy of an ellipsoid (local mm) in a local frame."""
    p = (
        loc.a - np.float32(center[0]),
        loc.b - np.float32(center[1]),
        loc.c - np.float32(center[2]),
    )
    f = sum((pi / si) ** 2 for pi, si in zip(p, semi, strict=True)) - 1.0
    g = 2.0 * np.sqrt(
        sum((pi * (wi / si**2)) ** 2 for pi, si, wi in zip(p, semi, loc.w, strict=True))
    )
    return ramp(f / np.maximum(g, 1e-6))


Section = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def tube(cv: Canvas, z_lo: float, z_hi: float, fn: Section, value: float, label: int = 0) -> None:
    """An extrusion along z whose elliptic section ``fn(z) -> (cx, cy, sx, sy)`` varies.

    ``fn`` takes float64 z (mm) and returns float32 arrays over the slices. Each chunk of
    slices is evaluated in the tight in-plane box of its own sections (+3 mm).
    """
    g = cv.grid
    dz, dy, dx = g.spacing_zyx
    k = np.nonzero((cv.z >= z_lo - dz) & (cv.z <= z_hi + dz))[0]
    if len(k) == 0:
        return
    cx, cy, sx, sy = (np.broadcast_to(t, k.shape) for t in fn(cv.z[k].astype(np.float64)))
    step = 16
    for c0 in range(0, len(k), step):
        s = slice(c0, c0 + step)
        zk = cv.z[k[s]]
        lo = (float((cx[s] - sx[s]).min()) - 3, float((cy[s] - sy[s]).min()) - 3, float(zk[0]))
        hi = (float((cx[s] + sx[s]).max()) + 3, float((cy[s] + sy[s]).max()) + 3, float(zk[-1]))
        box = g.index_box(lo, hi)
        if box is None:
            continue
        box = (slice(int(k[s][0]), int(k[s][-1]) + 1), box[1], box[2])
        u = cv.x[box[2]][None, None, :] - cx[s, None, None]
        v = cv.y[box[1]][None, :, None] - cy[s, None, None]
        sdf, _ = ellipse(u, v, sx[s, None, None], sy[s, None, None], dx, dy)
        occ = ramp(sdf)
        occ *= ramp((np.maximum(z_lo - zk, zk - z_hi) / np.float32(dz)).astype(np.float32))[
            :, None, None
        ]
        cv.paint(box, occ, value, label)
