"""Soft-tissue organs of the phantom: liver, kidneys, vessels and the trunk muscles.

Most are extrusions along z with a varying elliptic section (``engine.synth._canvas.tube``)
that follow the spine track (``engine.synth._torso.Track``).
"""

from __future__ import annotations

import numpy as np

from engine.synth._canvas import Canvas, ellipsoid, local, ramp, tube
from engine.synth._torso import Track, level_z
from engine.synth.anatomy import Anatomy

__all__ = ["paint_muscles", "paint_organs"]


def _knots(an: Anatomy, table: dict[str, tuple[float, ...]]):
    """Piecewise-linear profiles over z from values at named levels."""
    names = sorted(table, key=lambda n: level_z(an, n))
    zk = np.array([level_z(an, n) for n in names])
    cols = np.array([table[n] for n in names], np.float64)

    def at(z: np.ndarray, i: int) -> np.ndarray:
        return np.interp(z, zk, cols[:, i]).astype(np.float32)

    return at, float(zk.min()), float(zk.max())


def _paint_liver(
    cv: Canvas, an: Anatomy, track: Track, box: tuple[slice, ...], z_liver: float, half_z: float
) -> None:
    """The liver: an ellipsoid in coordinates normalized to the abdominal cavity.

    Evaluated in chunks of slices, each in the tight in-plane box of its cross-sections
    (+3 mm), instead of the whole right upper quadrant.
    """
    dz, dy, dx = cv.grid.spacing_zyx
    inset = an.fat_sc + an.wall_mm
    for c0 in range(box[0].start, box[0].stop, 16):
        ks = slice(c0, min(c0 + 16, box[0].stop))
        z = cv.z[ks].astype(np.float64)
        cy, a, b = track.torso(z)
        ac, bc = a - inset, b - inset
        w = ((z - z_liver) / half_z).astype(np.float32)
        r = np.sqrt(np.maximum(1.0 - w**2, 0.0)) + np.float32(0.05)
        xc, yc = an.body_cx - 0.42 * ac, cy - 0.05 * bc
        sub = cv.grid.index_box(
            (
                float((xc - 0.52 * r * ac).min()) - 3,
                float((yc - 0.72 * r * bc).min()) - 3,
                float(z[0]),
            ),
            (
                float((xc + 0.52 * r * ac).max()) + 3,
                float((yc + 0.72 * r * bc).max()) + 3,
                float(z[-1]),
            ),
        )
        if sub is None:
            continue
        jj = slice(max(sub[1].start, box[1].start), min(sub[1].stop, box[1].stop))
        ii = slice(max(sub[2].start, box[2].start), min(sub[2].stop, box[2].stop))
        if jj.start >= jj.stop or ii.start >= ii.stop:
            continue
        ac, bc = ac[:, None, None], bc[:, None, None]
        u = (cv.x[ii][None, None, :] - np.float32(an.body_cx)) / ac + np.float32(0.42)
        v = (cv.y[jj][None, :, None] - cy[:, None, None]) / bc + np.float32(0.05)
        w = w[:, None, None]
        f = (u / 0.52) ** 2 + (v / 0.72) ** 2 + w**2 - 1.0
        g = 2.0 * np.sqrt(
            (u * (dx / 0.27) / ac) ** 2 + (v * (dy / 0.5184) / bc) ** 2 + (w * (dz / half_z)) ** 2
        )
        cv.paint((ks, jj, ii), ramp(f / np.maximum(g, 1e-6)), an.hu_liver, 5)


def paint_organs(cv: Canvas, an: Anatomy, track: Track) -> None:
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
        _paint_liver(cv, an, track, box, z_liver, half_z)
    # retroperitoneal fat around the spine, psoas and kidneys
    t12 = an.vertebra("T12")
    z0, z1 = level_z(an, "tip"), t12.center[2] + 0.5 * t12.height

    def retro(z):
        x, y, w, d = track.at(z)
        return x, y + np.float32(10.0), w / 2 + np.float32(62 * s), d / 2 + np.float32(34.0)

    tube(cv, z0, z1, retro, an.hu_fat)
    # kidneys: right (patient right = -x) lower than left
    l1, w1 = an.vertebra("L1"), an.vertebra("L1").width
    for side, label, dzk in ((-1, 2, -18.0 * s), (1, 3, 0.0)):
        c = (l1.center[0] + side * (0.5 * w1 + 58 * s), l1.center[1] + 8 * s, l1.center[2] + dzk)
        loc = local(cv, c, 0.0, (32 * s, 27 * s, 56 * s))
        if loc is None:
            continue
        for shrink, hu, lab in (
            (0.0, an.hu_kidney, label),
            (9.0, an.hu_kidney * (0.8 if an.contrast else 0.95), 0),
        ):
            occ = ellipsoid(loc, (0, 0, 0), (28 * s - shrink, 23 * s - shrink, 52 * s - shrink))
            cv.paint(loc.box, occ, hu, lab)
        occ = ellipsoid(loc, (-side * 18 * s, -4 * s, 0), (9 * s, 10 * s, 20 * s))
        cv.paint(loc.box, occ, -80.0)  # renal sinus fat at the hilum
    # aorta down to the bifurcation at L4, then the common iliac arteries; IVC on the right
    z_bif = an.vertebra("L4").center[2]

    def aorta(z):
        x, y, w, d = track.at(z)
        r = np.float32(10.5 * s) * (1.0 + 0.002 * (z - z_bif)).astype(np.float32)
        return x + np.float32(11 * s), y - d * np.float32(0.55) - r - np.float32(2), r, r

    tube(cv, z_bif, float(cv.z.max()) + 10, aorta, an.hu_aorta, 52)
    for side in (-1, 1):

        def iliac(z, side=side):
            x, y, w, d = track.at(z)
            t = (np.float32(z_bif) - z).astype(np.float32)
            r = np.full_like(x, np.float32(6.0 * s))
            return (x + np.float32(11 * s) + side * 0.45 * t, y - d * 0.55 - 12 + 0.1 * t, r, r)

        tube(cv, z_bif - 90, z_bif, iliac, an.hu_aorta)

    def ivc(z):
        x, y, w, d = track.at(z)
        return (
            x - np.float32(22 * s),
            y - d * np.float32(0.5) - np.float32(11 * s),
            np.full_like(x, 12.0 * s),
            np.full_like(x, 8.5 * s),
        )

    tube(
        cv,
        an.vertebra("L5").center[2],
        float(cv.z.max()) + 10,
        ivc,
        an.hu_aorta * 0.8 if an.contrast else 40.0,
    )


def paint_muscles(cv: Canvas, an: Anatomy, track: Track) -> None:
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

        tube(cv, q_lo, q_hi, quad, an.paraspinal_hu + 5.0)

        def psoas(z, side=side):
            x, y, w, d = track.at(z)
            area = np.maximum(prof(z, 0), 0.02) * np.float32(an.psoas_area)
            sa = np.sqrt(area * 1.15 / np.pi)
            sb = np.sqrt(area / (1.15 * np.pi))
            return x + side * (w / 2 + sa - np.float32(1.0)), y + d * prof(z, 1), sa, sb

        tube(cv, float(cv.z.min()) - 10, z_top, psoas, an.psoas_hu, lab_ps)
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

        tube(cv, p_lo - 20, float(cv.z.max()) + 10, para, an.paraspinal_hu, lab_pa)
