"""The torso of the phantom: CT couch, skin, subcutaneous fat, abdominal wall, viscera.

The torso changes slowly along z, so it is evaluated on stations about 8 mm apart and
interpolated linearly between them, slice by slice; the visceral content (fat, bowel
loops, gas) is a smooth random texture anchored on a patient-fixed lattice.
"""

from __future__ import annotations

import numpy as np

from engine.synth._canvas import AIR, Canvas, ellipse, ramp
from engine.synth.anatomy import Anatomy

__all__ = ["Track", "level_z", "paint_torso"]

_TEX_STEP = 14.0  # mm, lattice of the bowel / visceral fat texture
_STATION_MM = 8.0  # torso evaluated about every 8 mm along z


class Track:
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


def level_z(an: Anatomy, name: str) -> float:
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


def _table(cv: Canvas, an: Anatomy) -> np.ndarray:
    """The CT couch: carbon-fibre shells around a foam core, curved like a cradle; (ny, nx)."""
    dz, dy, dx = cv.grid.spacing_zyx
    xx = (cv.x - np.float32(an.body_cx))[None, :]
    t = cv.y[:, None] - (np.float32(an.y_back) - np.float32(an.table_curve) * (xx / 230.0) ** 2)
    side = np.abs(xx) - np.float32(225.0)
    slab = np.maximum(np.maximum(-t, t - 50.0), side) / np.float32(dy)
    core = np.maximum(np.maximum(2.5 - t, t - 47.5), side + 2.5) / np.float32(dy)
    pad = np.maximum(np.maximum(-t - 5.0, t), side + 20.0) / np.float32(dy)
    bg = np.full(t.shape, AIR, np.float32)
    bg += (120.0 - AIR) * ramp(slab) + (-900.0 - 120.0) * ramp(core)
    bg += (-500.0 - bg) * ramp(pad)  # foam mattress under the patient
    return bg


def paint_torso(cv: Canvas, an: Anatomy, track: Track) -> None:
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
        sdf, _ = ellipse(xx, yy, a[sl, None, None], b[sl, None, None], 1.0, 1.0)
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
        out += (40.0 - out) * ramp(sdf.copy())
        out += (an.hu_fat - 40.0) * ramp(sdf + np.float32(2.0 / dx))
        out += (an.hu_muscle_wall - an.hu_fat) * ramp(sdf + np.float32(an.fat_sc / dx))
        out += (content - an.hu_muscle_wall) * ramp(sdf + (an.fat_sc + wall) / dx)
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
