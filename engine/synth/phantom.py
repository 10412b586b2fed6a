"""Render an ``Anatomy`` into a noise-free HU volume with labels.

Every structure is an approximate signed distance field (in voxel units, so that partial
volume follows the voxel footprint along the surface normal, slice thickness included),
evaluated only inside its bounding box (``Grid.index_box``). Occupancy is the linear ramp
``clip(0.5 - sdf, 0, 1)``; structures are composited in painter's order in float32 and a
voxel takes a structure's label where its occupancy is at least 0.5. Extrusions along a
local axis use the product of the cross-section and the axial ramps. The torso (body
outline, fat, abdominal wall, bowel texture), which changes slowly along z, is evaluated
on stations about 8 mm apart and interpolated linearly between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.geometry import Grid
from engine.synth.anatomy import Anatomy, Vertebra
from engine.synth.labels import BODY_LABELS, LEVEL_LABEL

__all__ = ["Phantom", "render"]

_AIR = -1000.0
_BODY_ID = {name: i for i, name in BODY_LABELS.items()}
_TEX_STEP = 14.0  # mm, lattice of the bowel / visceral fat texture
_STATION_MM = 8.0  # torso evaluated about every 8 mm along z


@dataclass(frozen=True)
class Phantom:
    """A rendered phantom on a grid.

    Attributes
    ----------
    hu : numpy.ndarray
        float32, shape (nz, ny, nx): noise-free true HU with partial volume.
    labels : numpy.ndarray
        uint8, shape (nz, ny, nx): ``LABELS`` ids (whole vertebrae with posterior elements).
    bodies : numpy.ndarray
        uint8, shape (nz, ny, nx): ``BODY_LABELS`` ids (T12-L4 vertebral bodies only).
    """

    hu: np.ndarray
    labels: np.ndarray
    bodies: np.ndarray


class _Canvas:
    """The volumes being painted and the grid they live on."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.hu = np.empty(grid.shape_zyx, np.float32)
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
        occ = np.broadcast_to(occ, sub.shape)
        sub += (np.float32(value) - sub) * occ if np.isscalar(value) else (value - sub) * occ
        if label or body:
            inside = occ >= 0.5
            if label:
                np.copyto(self.labels[box], np.uint8(label), where=inside)
            if body:
                np.copyto(self.bodies[box], np.uint8(body), where=inside)


@dataclass(frozen=True)
class _Local:
    """Local coordinates (mm) of a bounding box in a frame tilted about the x axis."""

    box: tuple[slice, slice, slice]
    a: np.ndarray  # (1, 1, ni): along x
    b: np.ndarray  # (nk, nj, 1): posterior, perpendicular to the axis
    c: np.ndarray  # (nk, nj, 1): along the cranial axis
    w: tuple[float, float, float]  # voxel footprint (mm) along a, b, c


def _local(
    cv: _Canvas,
    center: tuple[float, float, float],
    tilt: float,
    half: tuple[float, float, float],
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> _Local | None:
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
    return _Local(box, a, b, c, w)


def _ramp(sdf: np.ndarray) -> np.ndarray:
    """Occupancy of a voxel from its signed distance in voxel units (in place)."""
    sdf *= -1.0
    sdf += 0.5
    return np.clip(sdf, 0.0, 1.0, out=sdf)


def _ellipse(u, v, su, sv, wu: float, wv: float) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (voxels) to the ellipse ``(u/su)^2 + (v/sv)^2 = 1``, and ``rho^2``.

    First-order estimate ``f / |grad f|`` in voxel-scaled coordinates: exact on the
    boundary, which is where partial volume needs it.
    """
    r2 = (u / su) ** 2 + (v / sv) ** 2
    g = np.sqrt((u * (wu / su**2)) ** 2 + (v * (wv / sv**2)) ** 2)
    g *= 2.0
    np.maximum(g, 1e-6, out=g)
    return (r2 - 1.0) / g, r2


def _box(p: tuple, half: tuple, w: tuple, radius: float = 0.0) -> np.ndarray:
    """Signed distance (voxels) of a (rounded) box centred at 0; ``p`` local coords mm."""
    q = [(np.abs(pi) - (hi - radius)) / wi for pi, hi, wi in zip(p, half, w, strict=True)]
    outside = np.sqrt(sum(np.maximum(qi, 0.0) ** 2 for qi in q))
    inside = np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0)
    return outside + inside - radius / min(w)


# ----------------------------------------------------------------------------- spine


def _body_occ(loc: _Local, v: Vertebra, shrink: float) -> np.ndarray:
    """Occupancy of the vertebral body (outer surface moved inwards by ``shrink`` mm)."""
    d = v.depth
    bb = loc.b - np.float32(0.05 * d)  # ellipse centre: anterior semi 0.55 d, posterior 0.45 d
    sb = np.where(bb < 0, np.float32(0.55 * d - shrink), np.float32(0.45 * d - shrink))
    # posterior wall slightly concave at the midline (basivertebral foramen side)
    ua = loc.a / np.float32(0.45 * v.width)
    bb = bb + np.float32(3.0) * np.maximum(1.0 - ua**2, 0.0) * (bb > 0)
    sdf, r2 = _ellipse(loc.a, bb, np.float32(v.width / 2 - shrink), sb, loc.w[0], loc.w[1])
    occ = _ramp(sdf)
    rho = np.minimum(r2, 1.0)
    h = v.body_height / 2
    conc = 0.0 if v.shape == "biconcave" else 1.0  # normal endplate concavity (mm)
    top = np.float32(h - shrink) - conc * (1.0 - rho)
    bot = np.float32(-h + shrink) + conc * (1.0 - rho)
    loss = v.height_loss * v.height
    if v.shape == "wedge":  # anterior collapse; flat over the anterior and posterior 10%
        top = top - loss * np.clip((0.4 * d - loc.b) / (0.8 * d), 0.0, 1.0)
    elif v.shape == "biconcave":  # central collapse of both endplates
        dip = (0.5 * loss) * (1.0 - rho)
        top, bot = top - dip, bot + dip
    sdf_c = np.maximum(loc.c - top, bot - loc.c) / np.float32(loc.w[2])
    return occ * _ramp(sdf_c)


def _paint_vertebra(cv: _Canvas, v: Vertebra, disc_below: float) -> None:
    lab = LEVEL_LABEL[v.level]
    h, d, cw, cd = v.height, v.depth, v.canal_w, v.canal_d
    s = cw / 22.0
    bc = 0.5 * d + 0.8 + 0.5 * cd  # canal centre (b)
    thor = v.level.startswith("T")
    # canal content and cord, spanning the disc below
    span = 0.5 * h + disc_below + 1.0
    loc = _local(cv, v.center, v.tilt, (cw / 2 + 2, cd / 2 + 2, span), (0, bc, -disc_below / 2))
    if loc is not None:
        sdf, _ = _ellipse(loc.a, loc.b, cw / 2, cd / 2, loc.w[0], loc.w[1])
        ends = (np.abs(loc.c) - span) / np.float32(loc.w[2])
        cv.paint(loc.box, _ramp(np.maximum(sdf, ends)), 12.0)
        rc = 0.3 * min(cw, cd)
        sdf, _ = _ellipse(loc.a, loc.b, rc, rc, loc.w[0], loc.w[1])
        cord_hu = 32.0 if v.level in ("T10", "T11", "T12", "L1") else 18.0
        cv.paint(loc.box, _ramp(np.maximum(sdf, ends)), cord_hu, 79)
    # body: cortex then trabecular interior, optional cement
    loc = _local(cv, v.center, v.tilt, (v.width / 2 + 2, d / 2 + 2, h / 2 + 2))
    if loc is not None:
        body_id = _BODY_ID.get(v.level, 0)
        cv.paint(loc.box, _body_occ(loc, v, 0.0), v.hu_cortex, lab, body_id)
        cv.paint(loc.box, _body_occ(loc, v, v.cortex_mm), v.hu_trab)
        if v.cement:
            sdf, _ = _ellipse(
                loc.a, loc.b + np.float32(0.08 * d), 0.28 * v.width, 0.28 * d, loc.w[0], loc.w[1]
            )
            sdf_c = (np.abs(loc.c) - np.float32(0.3 * v.body_height)) / np.float32(loc.w[2])
            cv.paint(loc.box, _ramp(np.maximum(sdf, sdf_c)), 2800.0)
    # posterior elements: all cortices first, then all marrow (a proper union shell)
    c0 = 0.1 * h
    tp_b = bc + (4.0 if thor else 0.0)
    parts = [  # (half extents, offset, sdf function of (loc, shrink))
        ((cw / 2 + 9 * s, cd / 2 + 8 * s, 0.4 * h), (0, bc, c0), _arch(v, s)),
        (
            (4 * s, v.spinous_len / 2 + 8, 0.5 * h),
            (0, bc + cd / 2 + v.spinous_len / 2, c0),
            _spinous(v, s, thor),
        ),
        ((v.tp_span + 2, 10 * s, 7 * s), (0, tp_b, c0), _transverse(v, s, thor)),
        ((cw / 2 + 10 * s, 7 * s, 0.5 * h + 9 * s), (0, bc + cd / 2 - 2 * s, c0), _facets(v, s)),
    ]
    locs = [(_local(cv, v.center, v.tilt, half, off), fn) for half, off, fn in parts]
    for loc, fn in locs:
        if loc is not None:
            cv.paint(loc.box, _ramp(fn(loc, 0.0)), 750.0, lab)
    for loc, fn in locs:
        if loc is not None:
            cv.paint(loc.box, _ramp(fn(loc, 1.3)), v.hu_posterior)


def _arch(v: Vertebra, s: float):
    """Pedicles + laminae: an elliptic ring around the canal, behind the body."""
    cw, cd, h = v.canal_w, v.canal_d, v.height

    def fn(loc: _Local, k: float) -> np.ndarray:
        outer, _ = _ellipse(loc.a, loc.b, cw / 2 + 8 * s - k, cd / 2 + 6.5 * s - k, *loc.w[:2])
        inner, _ = _ellipse(loc.a, loc.b, cw / 2 + k, cd / 2 + k, *loc.w[:2])
        front = (np.float32(-0.5 * cd - 2.0 + k) - loc.b) / np.float32(loc.w[1])
        ends = (np.abs(loc.c) - np.float32(0.36 * h - k)) / np.float32(loc.w[2])
        return np.maximum(np.maximum(outer, -inner), np.maximum(front, ends))

    return fn


def _spinous(v: Vertebra, s: float, thor: bool):
    half_len = v.spinous_len / 2

    def fn(loc: _Local, k: float) -> np.ndarray:
        slope = np.float32(0.55 if thor else 0.12)  # thoracic processes point caudally
        c = loc.c + slope * (loc.b + half_len)
        hc = (0.22 if thor else 0.3) * v.height
        return _box((loc.a, loc.b, c), (3.2 * s - k, half_len - k, hc - k), loc.w, 1.5)

    return fn


def _transverse(v: Vertebra, s: float, thor: bool):
    inner = v.canal_w / 2 + 4.0 * s

    def fn(loc: _Local, k: float) -> np.ndarray:
        half_len = (v.tp_span - inner) / 2
        a = np.abs(loc.a) - np.float32(inner + half_len)
        b = loc.b - np.float32(0.45 if thor else 0.05) * (np.abs(loc.a) - np.float32(inner))
        return _box((a, b, loc.c), (half_len - k, 4.5 * s - k, 5.0 * s - k), loc.w, 1.5)

    return fn


def _facets(v: Vertebra, s: float):
    """Superior and inferior articular processes (both sides, above and below the arch)."""
    xa = v.canal_w / 2 + 3.0 * s
    zc = 0.5 * v.height + 1.0

    def fn(loc: _Local, k: float) -> np.ndarray:
        a = np.abs(loc.a) - np.float32(xa)
        c = np.abs(loc.c) - np.float32(zc)
        sdf, _ = _ellipse(a, loc.b, 4.5 * s - k, 5.5 * s - k, loc.w[0], loc.w[1])
        return np.maximum(sdf, (np.abs(c) - np.float32(7.0 * s - k)) / np.float32(loc.w[2]))

    return fn


def _paint_discs(cv: _Canvas, an: Anatomy) -> None:
    for disc in an.discs:
        loc = _local(
            cv,
            disc.center,
            disc.tilt,
            (disc.width / 2 + 3, disc.depth / 2 + 3, disc.height / 2 + 3),
        )
        if loc is None:
            continue
        bb = loc.b - np.float32(0.05 * disc.depth)
        for grow, hu in ((1.0, disc.hu + 10.0), (-0.25 * disc.depth, disc.hu - 15.0)):
            sb = np.where(
                bb < 0, np.float32(0.55 * disc.depth + grow), np.float32(0.45 * disc.depth + grow)
            )
            sdf, _ = _ellipse(loc.a, bb, disc.width / 2 + grow, sb, loc.w[0], loc.w[1])
            ends = (np.abs(loc.c) - np.float32(disc.height / 2 + 1.5)) / np.float32(loc.w[2])
            cv.paint(loc.box, _ramp(sdf) * _ramp(ends), hu)


def _paint_sacrum(cv: _Canvas, an: Anatomy) -> None:
    hu_marrow = an.vertebra("L5").hu_trab - 10.0
    segs = []
    for i, (x, y, z, tilt, h, hw, hd) in enumerate(an.sacrum):
        loc = _local(cv, (x, y, z), tilt, (hw + 2, hd + 4, h / 2 + 3))
        if loc is not None:
            segs.append((loc, hw, hd, h, i))

    def occ(loc: _Local, hw: float, hd: float, h: float, i: int, k: float) -> np.ndarray:
        sdf, _ = _ellipse(loc.a, loc.b, hw - k, hd - k, loc.w[0], loc.w[1])
        if i < 2:  # the S1/S2 bodies stand deeper than the alae
            body, _ = _ellipse(
                loc.a, loc.b + np.float32(0.4 * hd), 0.5 * hw - k, hd * 1.25 - k, loc.w[0], loc.w[1]
            )
            sdf = np.minimum(sdf, body)
        ends = (np.abs(loc.c) - np.float32(h / 2 - k)) / np.float32(loc.w[2])
        return _ramp(sdf) * _ramp(ends)

    for seg in segs:
        cv.paint(seg[0].box, occ(*seg, 0.0), 800.0, 25)
    for seg in segs:
        cv.paint(seg[0].box, occ(*seg, 1.5), hu_marrow)
    for loc, hw, hd, h, _ in segs[:3]:  # sacral canal
        sdf, _ = _ellipse(
            loc.a, loc.b - np.float32(0.45 * hd), 0.22 * hw, 0.3 * hd, loc.w[0], loc.w[1]
        )
        cv.paint(
            loc.box,
            _ramp(sdf) * _ramp((np.abs(loc.c) - np.float32(h / 2 + 1)) / np.float32(loc.w[2])),
            10.0,
        )


def _paint_spine(cv: _Canvas, an: Anatomy) -> None:
    _paint_discs(cv, an)
    _paint_sacrum(cv, an)
    for i, v in enumerate(an.vertebrae):
        _paint_vertebra(cv, v, an.discs[i].height)


# ----------------------------------------------------------------------------- soft tissue


class _Track:
    """The spine as functions of z: centre x, y, width and depth of the bodies (mm)."""

    def __init__(self, an: Anatomy) -> None:
        x, y, z, _, h, hw, hd = an.sacrum[0]
        pts = [(z, x, y, hw, 2.4 * hd)] + [
            (v.center[2], v.center[0], v.center[1], v.width, v.depth)
            for v in reversed(an.vertebrae)
        ]
        self.knots = np.array(pts, np.float64)
        self.an = an

    def at(self, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """(x, y, width, depth) of the spine at each z."""
        k = self.knots
        return tuple(np.interp(z, k[:, 0], k[:, i]).astype(np.float32) for i in range(1, 5))

    def torso(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre y, half width, half depth) of the body outline at each z."""
        an = self.an
        z_t12 = an.vertebra("T12").center[2]
        z_l5 = an.vertebra("L5").center[2]
        pelvis = 0.08 if an.sex == "F" else 0.03
        chest = 1.0 / (1.0 + np.exp(-(z - z_t12) / 30.0))
        hips = 1.0 / (1.0 + np.exp(-(z_l5 - z) / 25.0))
        a = an.body_a * (1.0 + 0.06 * chest + pelvis * hips)
        b = an.body_b * (1.0 - 0.06 * chest)
        return (an.y_back - 0.93 * b).astype(np.float32), a.astype(np.float32), b.astype(np.float32)


def _level_z(an: Anatomy, name: str) -> float:
    if name == "S1":
        return an.sacrum[0][2]
    if name == "tip":
        return an.sacrum[-1][2]
    return an.vertebra(name).center[2]


def _texture_matrix(coords: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian interpolation weights from a fixed lattice (multiples of ``step``).

    Returns the weight matrix, shape (len(coords), n_lattice), and the lattice index of
    its first column. Rows are normalized so the field has unit variance everywhere.
    """
    lo = int(np.floor(coords.min() / step)) - 3
    hi = int(np.ceil(coords.max() / step)) + 3
    lat = np.arange(lo, hi + 1) * step
    w = np.exp(-0.5 * ((coords[:, None] - lat[None, :]) / (0.7 * step)) ** 2)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
    return w.astype(np.float32), lo


def _texture(an: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray, field: int) -> np.ndarray:
    """A smooth unit-variance random field on a patient-fixed lattice, shape (nz, ny, nx).

    Lattice planes are seeded by ``(anatomy.texture_seed, field, plane index)`` and anchored
    in patient space, so two grids of the same patient see the same bowel loops.
    """
    wx, ix = _texture_matrix(x, _TEX_STEP)
    wy, iy = _texture_matrix(y, _TEX_STEP)
    wz, iz = _texture_matrix(z, _TEX_STEP)
    half = 64  # lattice planes span +-64 steps (~900 mm) around the origin
    coarse = np.empty((wz.shape[1], wy.shape[1], wx.shape[1]), np.float32)
    for m in range(wz.shape[1]):
        plane = np.random.default_rng((an.texture_seed, field, iz + m + 10_000)).standard_normal(
            (2 * half, 2 * half), dtype=np.float32
        )
        coarse[m] = plane[half + iy : half + iy + wy.shape[1], half + ix : half + ix + wx.shape[1]]
    coarse = np.tensordot(wz, coarse, axes=(1, 0))  # (nz, nly, nlx)
    return np.matmul(np.matmul(wy, coarse), wx.T)


def _table(cv: _Canvas, an: Anatomy) -> np.ndarray:
    """The CT couch: carbon-fibre shells around a foam core, curved like a cradle; (ny, nx)."""
    dz, dy, dx = cv.grid.spacing_zyx
    xx = (cv.x - np.float32(an.body_cx))[None, :]
    t = cv.y[:, None] - (np.float32(an.y_back) - np.float32(an.table_curve) * (xx / 230.0) ** 2)
    side = np.abs(xx) - np.float32(225.0)
    slab = np.maximum(np.maximum(-t, t - 50.0), side) / np.float32(dy)
    core = np.maximum(np.maximum(2.5 - t, t - 47.5), side + 2.5) / np.float32(dy)
    pad = np.maximum(np.maximum(-t - 5.0, t), side + 20.0) / np.float32(dy)
    bg = np.full(t.shape, _AIR, np.float32)
    bg += (120.0 - _AIR) * _ramp(slab) + (-900.0 - 120.0) * _ramp(core)
    bg += (-500.0 - bg) * _ramp(pad)  # foam mattress under the patient
    return bg


def _paint_torso(cv: _Canvas, an: Anatomy, track: _Track) -> None:
    """Skin, subcutaneous fat, abdominal wall and the visceral content with bowel loops."""
    nz = cv.grid.shape_zyx[0]
    dz, dy, dx = cv.grid.spacing_zyx
    step = max(1, int(round(_STATION_MM / dz)))
    ks = np.unique(np.r_[np.arange(0, nz, step), nz - 1])
    zs = cv.z[ks].astype(np.float64)
    bg = _table(cv, an)
    cy, a, b = track.torso(zs)
    _, sy, _, _ = track.at(zs)
    xx = (cv.x - np.float32(an.body_cx))[None, None, :]
    y_top = np.float32(an.y_back) - np.float32(an.table_curve) * (xx / 230.0) ** 2
    theta = float(_ndtri(an.visceral_fat))
    stations = np.empty((len(ks), *cv.grid.shape_zyx[1:]), np.float32)
    for s0 in range(0, len(ks), 8):
        sl = slice(s0, s0 + 8)
        yy = cv.y[None, :, None] - cy[sl, None, None]
        sdf, _ = _ellipse(xx, yy, a[sl, None, None], b[sl, None, None], 1.0, 1.0)
        sdf = np.maximum(sdf, cv.y[None, :, None] - y_top) / np.float32(dx)
        wall = an.wall_mm * np.clip(
            (sy[sl, None, None] + 15.0 - cv.y[None, :, None]) / 30.0, 0.0, 1.0
        )
        fat = _texture(an, cv.x, cv.y, cv.z[ks[sl]], 0)
        bowel = np.clip(0.5 + (fat - theta) / 0.35, 0.0, 1.0)
        gas = _texture(an, cv.x, cv.y, cv.z[ks[sl]], 1)
        gas = np.clip((gas - 2.2) / 0.25, 0.0, 1.0) * bowel
        content = an.hu_fat + (an.hu_bowel - an.hu_fat) * bowel + (-950.0 - an.hu_bowel) * gas
        out = stations[sl]
        out[...] = bg
        out += (40.0 - out) * _ramp(sdf.copy())
        out += (an.hu_fat - 40.0) * _ramp(sdf + np.float32(2.0 / dx))
        out += (an.hu_muscle_wall - an.hu_fat) * _ramp(sdf + np.float32(an.fat_sc / dx))
        out += (content - an.hu_muscle_wall) * _ramp(sdf + (an.fat_sc + wall) / dx)
    # linear interpolation between stations, slice by slice (cache friendly)
    pos = np.searchsorted(ks, np.arange(nz), side="right") - 1
    pos = np.minimum(pos, len(ks) - 2) if len(ks) > 1 else np.zeros(nz, int)
    for k in range(nz):
        p = pos[k]
        if len(ks) == 1 or ks[p] == k:
            cv.hu[k] = stations[p]
            continue
        w = np.float32((k - ks[p]) / (ks[p + 1] - ks[p]))
        np.subtract(stations[p + 1], stations[p], out=cv.hu[k])
        cv.hu[k] *= w
        cv.hu[k] += stations[p]


def _ndtri(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))


def _tube(
    cv: _Canvas, z_lo: float, z_hi: float, fn, value: float, label: int = 0, extent: float = 120.0
) -> None:
    """An extrusion along z whose elliptic section ``fn(z) -> (cx, cy, sx, sy)`` varies.

    ``fn`` takes and returns float32 arrays over the slices; ``extent`` (mm) bounds the
    in-plane search box around the section centres.
    """
    g = cv.grid
    k = np.nonzero((cv.z >= z_lo - g.spacing_zyx[0]) & (cv.z <= z_hi + g.spacing_zyx[0]))[0]
    if len(k) == 0:
        return
    cx, cy, sx, sy = fn(cv.z[k].astype(np.float64))
    lo = (float((cx - sx).min()) - 3, float((cy - sy).min()) - 3, float(cv.z[k[0]]))
    hi = (float((cx + sx).max()) + 3, float((cy + sy).max()) + 3, float(cv.z[k[-1]]))
    box = g.index_box(lo, hi)
    if box is None:
        return
    box = (slice(int(k[0]), int(k[-1]) + 1), box[1], box[2])
    col = (None, None, None)
    u = cv.x[box[2]][None, None, :] - cx[:, col[0], col[1]]
    v = cv.y[box[1]][None, :, None] - cy[:, None, None]
    dz, dy, dx = g.spacing_zyx
    sdf, _ = _ellipse(u, v, sx[:, None, None], sy[:, None, None], dx, dy)
    ends = np.maximum(z_lo - cv.z[box[0]], cv.z[box[0]] - z_hi) / np.float32(dz)
    cv.paint(box, _ramp(sdf) * _ramp(ends[:, None, None].astype(np.float32)), value, label)
    del extent


def _knots(an: Anatomy, table: dict[str, tuple[float, ...]]):
    """Piecewise-linear profiles over z from values at named levels."""
    names = sorted(table, key=lambda n: _level_z(an, n))
    zk = np.array([_level_z(an, n) for n in names])
    cols = np.array([table[n] for n in names], np.float64)

    def at(z: np.ndarray, i: int) -> np.ndarray:
        return np.interp(z, zk, cols[:, i]).astype(np.float32)

    return at, float(zk.min()), float(zk.max())


def _paint_organs(cv: _Canvas, an: Anatomy, track: _Track) -> None:
    """Liver, retroperitoneal fat, kidneys, aorta (+ iliac arteries) and IVC."""
    s = an.scale
    dz, dy, dx = cv.grid.spacing_zyx
    # liver: an ellipsoid in coordinates normalized to the abdominal cavity (stays inside)
    z_liver = an.vertebra("T11").center[2] + 25.0 * s
    half_z = 100.0 * s
    box = cv.grid.index_box(
        (an.body_cx - 2 * an.body_a, an.y_back - 2.5 * an.body_b, z_liver - half_z),
        (an.body_cx, an.y_back, z_liver + half_z),
    )
    if box is not None:
        z = cv.z[box[0]].astype(np.float64)
        cy, a, b = track.torso(z)
        inset = an.fat_sc + an.wall_mm
        ac, bc = (a - inset)[:, None, None], (b - inset)[:, None, None]
        u = (cv.x[box[2]][None, None, :] - np.float32(an.body_cx)) / ac + np.float32(0.42)
        v = (cv.y[box[1]][None, :, None] - cy[:, None, None]) / bc + np.float32(0.05)
        w = ((z - z_liver) / half_z).astype(np.float32)[:, None, None]
        f = (u / 0.52) ** 2 + (v / 0.72) ** 2 + w**2 - 1.0
        g = 2.0 * np.sqrt(
            (u * (dx / 0.27) / ac) ** 2 + (v * (dy / 0.5184) / bc) ** 2 + (w * (dz / half_z)) ** 2
        )
        cv.paint(box, _ramp(f / np.maximum(g, 1e-6)), an.hu_liver, 5)
    # retroperitoneal fat around the spine, psoas and kidneys
    t12 = an.vertebra("T12")
    z0, z1 = _level_z(an, "tip"), t12.center[2] + 0.5 * t12.height

    def retro(z):
        x, y, w, d = track.at(z)
        return x, y + np.float32(10.0), w / 2 + np.float32(62 * s), d / 2 + np.float32(34.0)

    _tube(cv, z0, z1, retro, an.hu_fat)
    # kidneys: right (patient right = -x) lower than left
    l1, w1 = an.vertebra("L1"), an.vertebra("L1").width
    for side, label, dzk in ((-1, 2, -18.0 * s), (1, 3, 0.0)):
        c = (l1.center[0] + side * (0.5 * w1 + 58 * s), l1.center[1] + 8 * s, l1.center[2] + dzk)
        loc = _local(cv, c, 0.0, (32 * s, 27 * s, 56 * s))
        if loc is None:
            continue
        for shrink, hu, lab in (
            (0.0, an.hu_kidney, label),
            (9.0, an.hu_kidney * (0.8 if an.contrast else 0.95), 0),
        ):
            occ = _ellipsoid(loc, (0, 0, 0), (28 * s - shrink, 23 * s - shrink, 52 * s - shrink))
            cv.paint(loc.box, occ, hu, lab)
        occ = _ellipsoid(loc, (-side * 18 * s, -4 * s, 0), (9 * s, 10 * s, 20 * s))
        cv.paint(loc.box, occ, -80.0)  # renal sinus fat at the hilum
    # aorta down to the bifurcation at L4, then the common iliac arteries; IVC on the right
    z_bif = an.vertebra("L4").center[2]

    def aorta(z):
        x, y, w, d = track.at(z)
        r = np.float32(10.5 * s) * (1.0 + 0.002 * (z - z_bif)).astype(np.float32)
        return x + np.float32(11 * s), y - d * np.float32(0.55) - r - np.float32(2), r, r

    _tube(cv, z_bif, float(cv.z.max()) + 10, aorta, an.hu_aorta, 52)
    for side in (-1, 1):

        def iliac(z, side=side):
            x, y, w, d = track.at(z)
            t = (np.float32(z_bif) - z).astype(np.float32)
            r = np.full_like(x, np.float32(6.0 * s))
            return (x + np.float32(11 * s) + side * 0.45 * t, y - d * 0.55 - 12 + 0.1 * t, r, r)

        _tube(cv, z_bif - 90, z_bif, iliac, an.hu_aorta)

    def ivc(z):
        x, y, w, d = track.at(z)
        return (
            x - np.float32(22 * s),
            y - d * np.float32(0.5) - np.float32(11 * s),
            np.full_like(x, 12.0 * s),
            np.full_like(x, 8.5 * s),
        )

    _tube(
        cv,
        an.vertebra("L5").center[2],
        float(cv.z.max()) + 10,
        ivc,
        an.hu_aorta * 0.8 if an.contrast else 40.0,
    )


def _ellipsoid(
    loc: _Local, center: tuple[float, float, float], semi: tuple[float, float, float]
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
    return _ramp(f / np.maximum(g, 1e-6))


def _paint_muscles(cv: _Canvas, an: Anatomy, track: _Track) -> None:
    """Quadratus lumborum, psoas (iliopsoas) and paraspinal (autochthon) muscles."""
    s = an.scale
    # psoas: area relative to L3 and AP offset (in body depths) at each level
    prof, z_lo, z_hi = _knots(
        an,
        {
            "T12": (0.0, 0.25),
            "L1": (0.3, 0.15),
            "L2": (0.65, 0.05),
            "L3": (1.0, 0.0),
            "L4": (1.25, -0.15),
            "L5": (1.35, -0.35),
            "S1": (1.3, -0.6),
            "tip": (1.2, -0.9),
        },
    )
    z_top = an.vertebra("T12").center[2] - 0.3 * an.vertebra("T12").height
    # quadratus lumborum (unlabelled), lateral to the psoas behind the kidneys
    qprof, q_lo, q_hi = _knots(
        an, {"T12": (0.3,), "L1": (0.8,), "L3": (1.0,), "L5": (0.6,), "S1": (0.1,)}
    )
    for side, lab_ps in ((-1, 89), (1, 88)):

        def quad(z, side=side):
            x, y, w, d = track.at(z)
            g = qprof(z, 0)
            return (
                x + side * (w / 2 + np.float32(42 * s)),
                y + d * 0.5 + np.float32(6),
                np.float32(17 * s) * g + 1,
                np.float32(9 * s) * g + 1,
            )

        _tube(cv, q_lo, q_hi, quad, an.paraspinal_hu + 5.0)

        def psoas(z, side=side):
            x, y, w, d = track.at(z)
            area = np.maximum(prof(z, 0), 0.02) * np.float32(an.psoas_area)
            sa = np.sqrt(area * 1.15 / np.pi)
            sb = np.sqrt(area / (1.15 * np.pi))
            return x + side * (w / 2 + sa - np.float32(1.0)), y + d * prof(z, 1), sa, sb

        _tube(cv, float(cv.z.min()) - 10, z_top, psoas, an.psoas_hu, lab_ps)
    # paraspinal: area relative to L3; depth from the laminae to the subcutaneous fat
    pprof, p_lo, p_hi = _knots(
        an,
        {
            "T10": (0.55,),
            "T12": (0.65,),
            "L1": (0.75,),
            "L2": (0.9,),
            "L3": (1.0,),
            "L4": (1.0,),
            "L5": (0.9,),
            "S1": (0.6,),
            "tip": (0.2,),
        },
    )
    for side, lab_pa in ((-1, 87), (1, 86)):

        def para(z, side=side):
            x, y, w, d = track.at(z)
            area = pprof(z, 0) * np.float32(an.paraspinal_area)
            front = y + d / 2 + np.float32(13.0 * s)
            avail = np.float32(an.y_back - an.fat_sc - 1.0) - front
            sb = np.clip(np.minimum(avail / 2, np.sqrt(area / (1.5 * np.pi))), 6.0, None)
            sa = area / (np.pi * sb)
            return x + side * (np.float32(4.5 * s) + sa), front + sb, sa, sb

        _tube(cv, p_lo - 20, float(cv.z.max()) + 10, para, an.paraspinal_hu, lab_pa)


def _paint_pelvis(cv: _Canvas, an: Anatomy) -> None:
    """Iliac wings (hip_left/right) with the iliacus on their inner surface."""
    s = an.scale
    x1, y1, z1, _, _, hw, hd = an.sacrum[0]
    z_top = an.discs[-2].center[2] + 5.0  # iliac crest near the L4/L5 disc
    z_bot = an.sacrum[-1][2] - 50.0
    rx, ry = 78.0 * s, 48.0 * s
    dz, dy, dx = cv.grid.spacing_zyx
    for side, label, lab_il in ((-1, 78, 89), (1, 77, 88)):
        xc, yc = x1 + side * (hw - 6.0 * s), y1 + 8.0 * s - ry
        box = cv.grid.index_box(
            (xc - rx - 20 if side < 0 else xc - 20, yc - ry - 15, z_bot),
            (xc + 20 if side < 0 else xc + rx + 20, yc + ry + 25, z_top + 3),
        )
        if box is None:
            continue
        z = cv.z[box[0]][:, None, None]
        f = np.clip((z - np.float32(z_bot)) / np.float32(z_top - z_bot), 0.0, 1.0)
        shrink = np.float32(0.6) + np.float32(0.4) * f  # the pelvis narrows caudally
        u = side * (cv.x[box[2]][None, None, :] - np.float32(xc))
        v = cv.y[box[1]][None, :, None] - np.float32(yc)
        e, _ = _ellipse(u, v, rx * shrink, ry * (0.7 + 0.3 * f), 1.0, 1.0)  # mm
        post = np.clip(v / np.float32(ry), 0.0, 1.0)
        thick = np.float32(4.0) + np.float32(9.0) * post + np.float32(6.0) * (1.0 - f)
        keep = np.maximum(np.float32(-5.0) - u, np.float32(-0.8 * ry) - v)  # lateral, not front
        top = (z - np.float32(z_top)) / np.float32(dz)
        # iliacus on the inner (anteromedial) surface, continuous with the psoas
        il = np.maximum(np.abs(e + thick / 2 + 9.0) - 9.0, keep) / np.float32(dx)
        il_top = (z - np.float32(z_top - 15.0)) / np.float32(dz)
        cv.paint(box, _ramp(il) * _ramp(il_top), an.psoas_hu, lab_il)
        for k, hu, lab in ((0.0, 850.0, label), (1.6, 240.0, 0)):
            band = np.maximum(np.abs(e) - (thick / 2 - k), keep) / np.float32(dx)
            cv.paint(box, _ramp(band) * _ramp(top + np.float32(k / dz)), hu, lab)


def _paint_ribs(cv: _Canvas, an: Anatomy, track: _Track) -> None:
    """Ribs 10-12: tubes hugging the inner body wall, descending anteriorly."""
    s = an.scale
    dz, dy, dx = cv.grid.spacing_zyx
    for level, n, t_end, drop in (
        ("T10", 0, -45.0, 45.0),
        ("T11", 1, -5.0, 38.0),
        ("T12", 2, 30.0, 22.0),
    ):
        v = an.vertebra(level)
        z0 = v.center[2] + 0.3 * v.height
        cy, a, b = track.torso(np.array([z0]))
        inset = an.fat_sc + an.wall_mm * 0.3 + 6.0
        ar = float(a[0]) - inset
        yc = v.center[1] - 5.0
        bp = v.center[1] + 0.5 * v.depth + 28.0 * s - yc
        ba = yc - (float(cy[0]) - float(b[0])) - inset
        t0 = math.radians(72.0)
        t1 = math.radians(t_end)
        for side, label in ((-1, 113 + n), (1, 101 + n)):
            x_lo = v.center[0] + side * 0.3 * v.width
            box = cv.grid.index_box(
                (min(x_lo, v.center[0] + side * (ar + 8)), yc - ba - 8, z0 - drop - 10),
                (max(x_lo, v.center[0] + side * (ar + 8)), yc + bp + 8, z0 + 8),
            )
            if box is None:
                continue
            u = side * (cv.x[box[2]][None, None, :] - np.float32(v.center[0]))
            vv = cv.y[box[1]][None, :, None] - np.float32(yc)
            semi_v = np.where(vv > 0, np.float32(bp), np.float32(ba))
            e, _ = _ellipse(u, vv, np.float32(ar), semi_v, 1.0, 1.0)  # mm from the rib line
            t = np.arctan2(vv / semi_v, np.maximum(u, 1e-3) / np.float32(ar))
            zc = np.float32(z0) - np.float32(drop) * (np.float32(t0) - t) / np.float32(t0 - t1)
            dzr = cv.z[box[0]][:, None, None] - zc
            ends = np.maximum(t - np.float32(t0), np.float32(t1) - t) * np.float32(ar)
            for k, hu, lab in ((0.0, 750.0, label), (1.2, 200.0, 0)):
                sdf, _ = _ellipse(e, dzr, 3.8 * s - k, 6.5 * s - k, dx, dz)
                cv.paint(box, _ramp(np.maximum(sdf, (ends + k) / np.float32(dx))), hu, lab)
            # neck: from the costal facet of the body to the start of the arc
            p0 = np.array([v.center[0] + side * 0.45 * v.width, v.center[1] + 0.3 * v.depth, z0])
            p1 = np.array([v.center[0] + side * ar * math.cos(t0), yc + bp * math.sin(t0), z0])
            _capsule(cv, p0, p1, 4.0 * s, 750.0, label)


def _capsule(cv: _Canvas, p0: np.ndarray, p1: np.ndarray, r: float, hu: float, label: int) -> None:
    box = cv.grid.index_box(tuple(np.minimum(p0, p1) - r - 2), tuple(np.maximum(p0, p1) + r + 2))
    if box is None:
        return
    dz, dy, dx = cv.grid.spacing_zyx
    px = cv.x[box[2]][None, None, :] - np.float32(p0[0])
    py = cv.y[box[1]][None, :, None] - np.float32(p0[1])
    pz = cv.z[box[0]][:, None, None] - np.float32(p0[2])
    d = (p1 - p0).astype(np.float32)
    h = np.clip((px * d[0] + py * d[1] + pz * d[2]) / np.float32(d @ d), 0.0, 1.0)
    dist = np.sqrt((px - h * d[0]) ** 2 + (py - h * d[1]) ** 2 + (pz - h * d[2]) ** 2)
    cv.paint(box, _ramp((dist - np.float32(r)) / np.float32(dx)), hu, label)


# ----------------------------------------------------------------------------- render


def render(anatomy: Anatomy, grid: Grid) -> Phantom:
    """Render the phantom of ``anatomy`` on ``grid``.

    Parameters
    ----------
    anatomy : Anatomy
        From ``engine.synth.anatomy.sample_anatomy``.
    grid : Grid
        Any axial grid (for example from ``scan_grid``); structures outside it are skipped.

    Returns
    -------
    Phantom
        True HU (float32), ``LABELS`` map and ``BODY_LABELS`` map, each of shape
        ``grid.shape_zyx``. Deterministic given ``anatomy`` and ``grid``.
    """
    cv = _Canvas(grid)
    track = _Track(anatomy)
    _paint_torso(cv, anatomy, track)
    _paint_organs(cv, anatomy, track)
    _paint_muscles(cv, anatomy, track)
    _paint_pelvis(cv, anatomy)
    _paint_ribs(cv, anatomy, track)
    _paint_spine(cv, anatomy)
    return Phantom(hu=cv.hu, labels=cv.labels, bodies=cv.bodies)
