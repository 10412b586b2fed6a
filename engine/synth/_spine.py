"""The spine of the phantom: intervertebral discs, sacrum and vertebrae.

Vertebral bodies are elliptic cylinders with endplate concavity and Genant deformities
(wedge, biconcave, crush); posterior elements (arch, spinous and transverse processes,
facets) are unions of rounded boxes and ellipses, painted as a cortical shell around
marrow. All in the vertebra's tilted local frame (``engine.synth._canvas.local``).
"""

from __future__ import annotations

import numpy as np

from engine.synth._canvas import Canvas, Local, box_sdf, ellipse, local, ramp
from engine.synth.anatomy import Anatomy, Vertebra
from engine.synth.labels import BODY_LABELS, LEVEL_LABEL

__all__ = ["paint_spine"]

_BODY_ID = {name: i for i, name in BODY_LABELS.items()}


def _body_occ(loc: Local, v: Vertebra, shrink: float) -> np.ndarray:
    """Occupancy of the vertebral body (outer surface moved inwards by ``shrink`` mm)."""
    d = v.depth
    bb = loc.b - np.float32(0.05 * d)  # ellipse centre: anterior semi 0.55 d, posterior 0.45 d
    sb = np.where(bb < 0, np.float32(0.55 * d - shrink), np.float32(0.45 * d - shrink))
    # posterior wall slightly concave at the midline (basivertebral foramen side)
    ua = loc.a / np.float32(0.45 * v.width)
    bb = bb + np.float32(3.0) * np.maximum(1.0 - ua**2, 0.0) * (bb > 0)
    sdf, r2 = ellipse(loc.a, bb, np.float32(v.width / 2 - shrink), sb, loc.w[0], loc.w[1])
    occ = ramp(sdf)
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
    return occ * ramp(sdf_c)


def _paint_vertebra(cv: Canvas, v: Vertebra, disc_below: float) -> None:
    lab = LEVEL_LABEL[v.level]
    h, d, cw, cd = v.height, v.depth, v.canal_w, v.canal_d
    s = cw / 22.0
    bc = 0.5 * d + 0.8 + 0.5 * cd  # canal centre (b)
    thor = v.level.startswith("T")
    # canal content and cord, spanning the disc below
    span = 0.5 * h + disc_below + 1.0
    loc = local(cv, v.center, v.tilt, (cw / 2 + 2, cd / 2 + 2, span), (0, bc, -disc_below / 2))
    if loc is not None:
        sdf, _ = ellipse(loc.a, loc.b, cw / 2, cd / 2, loc.w[0], loc.w[1])
        ends = (np.abs(loc.c) - span) / np.float32(loc.w[2])
        cv.paint(loc.box, ramp(np.maximum(sdf, ends)), 12.0)
        rc = 0.3 * min(cw, cd)
        sdf, _ = ellipse(loc.a, loc.b, rc, rc, loc.w[0], loc.w[1])
        cord_hu = 32.0 if v.level in ("T10", "T11", "T12", "L1") else 18.0
        cv.paint(loc.box, ramp(np.maximum(sdf, ends)), cord_hu, 79)
    # body: cortex then trabecular interior, optional cement
    loc = local(cv, v.center, v.tilt, (v.width / 2 + 2, d / 2 + 2, h / 2 + 2))
    if loc is not None:
        body_id = _BODY_ID.get(v.level, 0)
        cv.paint(loc.box, _body_occ(loc, v, 0.0), v.hu_cortex, lab, body_id)
        cv.paint(loc.box, _body_occ(loc, v, v.cortex_mm), v.hu_trab)
        if v.cement:
            sdf, _ = ellipse(
                loc.a, loc.b + np.float32(0.08 * d), 0.28 * v.width, 0.28 * d, loc.w[0], loc.w[1]
            )
            sdf_c = (np.abs(loc.c) - np.float32(0.3 * v.body_height)) / np.float32(loc.w[2])
            cv.paint(loc.box, ramp(np.maximum(sdf, sdf_c)), 2800.0)
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
    locs = [(local(cv, v.center, v.tilt, half, off), fn) for half, off, fn in parts]
    for loc, fn in locs:
        if loc is not None:
            cv.paint(loc.box, ramp(fn(loc, 0.0)), 750.0, lab)
    for loc, fn in locs:
        if loc is not None:
            cv.paint(loc.box, ramp(fn(loc, 1.3)), v.hu_posterior)


def _arch(v: Vertebra, s: float):
    """Pedicles + laminae: an elliptic ring around the canal, behind the body."""
    cw, cd, h = v.canal_w, v.canal_d, v.height

    def fn(loc: Local, k: float) -> np.ndarray:
        outer, _ = ellipse(loc.a, loc.b, cw / 2 + 8 * s - k, cd / 2 + 6.5 * s - k, *loc.w[:2])
        inner, _ = ellipse(loc.a, loc.b, cw / 2 + k, cd / 2 + k, *loc.w[:2])
        front = (np.float32(-0.5 * cd - 2.0 + k) - loc.b) / np.float32(loc.w[1])
        ends = (np.abs(loc.c) - np.float32(0.36 * h - k)) / np.float32(loc.w[2])
        return np.maximum(np.maximum(outer, -inner), np.maximum(front, ends))

    return fn


def _spinous(v: Vertebra, s: float, thor: bool):
    half_len = v.spinous_len / 2

    def fn(loc: Local, k: float) -> np.ndarray:
        slope = np.float32(0.55 if thor else 0.12)  # thoracic processes point caudally
        c = loc.c + slope * (loc.b + half_len)
        hc = (0.22 if thor else 0.3) * v.height
        return box_sdf((loc.a, loc.b, c), (3.2 * s - k, half_len - k, hc - k), loc.w, 1.5)

    return fn


def _transverse(v: Vertebra, s: float, thor: bool):
    inner = v.canal_w / 2 + 4.0 * s

    def fn(loc: Local, k: float) -> np.ndarray:
        half_len = (v.tp_span - inner) / 2
        a = np.abs(loc.a) - np.float32(inner + half_len)
        b = loc.b - np.float32(0.45 if thor else 0.05) * (np.abs(loc.a) - np.float32(inner))
        return box_sdf((a, b, loc.c), (half_len - k, 4.5 * s - k, 5.0 * s - k), loc.w, 1.5)

    return fn


def _facets(v: Vertebra, s: float):
    """Superior and inferior articular processes (both sides, above and below the arch)."""
    xa = v.canal_w / 2 + 3.0 * s
    zc = 0.5 * v.height + 1.0

    def fn(loc: Local, k: float) -> np.ndarray:
        a = np.abs(loc.a) - np.float32(xa)
        c = np.abs(loc.c) - np.float32(zc)
        sdf, _ = ellipse(a, loc.b, 4.5 * s - k, 5.5 * s - k, loc.w[0], loc.w[1])
        return np.maximum(sdf, (np.abs(c) - np.float32(7.0 * s - k)) / np.float32(loc.w[2]))

    return fn


def _paint_discs(cv: Canvas, an: Anatomy) -> None:
    for disc in an.discs:
        loc = local(
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
            sdf, _ = ellipse(loc.a, bb, disc.width / 2 + grow, sb, loc.w[0], loc.w[1])
            ends = (np.abs(loc.c) - np.float32(disc.height / 2 + 1.5)) / np.float32(loc.w[2])
            cv.paint(loc.box, ramp(sdf) * ramp(ends), hu)


def _paint_sacrum(cv: Canvas, an: Anatomy) -> None:
    hu_marrow = an.vertebra("L5").hu_trab - 10.0
    segs = []
    for i, (x, y, z, tilt, h, hw, hd) in enumerate(an.sacrum):
        loc = local(cv, (x, y, z), tilt, (hw + 2, hd + 4, h / 2 + 3))
        if loc is not None:
            segs.append((loc, hw, hd, h, i))

    def occ(loc: Local, hw: float, hd: float, h: float, i: int, k: float) -> np.ndarray:
        sdf, _ = ellipse(loc.a, loc.b, hw - k, hd - k, loc.w[0], loc.w[1])
        if i < 2:  # the S1/S2 bodies stand deeper than the alae
            body, _ = ellipse(
                loc.a, loc.b + np.float32(0.4 * hd), 0.5 * hw - k, hd * 1.25 - k, loc.w[0], loc.w[1]
            )
            sdf = np.minimum(sdf, body)
        ends = (np.abs(loc.c) - np.float32(h / 2 - k)) / np.float32(loc.w[2])
        return ramp(sdf) * ramp(ends)

    for seg in segs:
        cv.paint(seg[0].box, occ(*seg, 0.0), 800.0, 25)
    for seg in segs:
        cv.paint(seg[0].box, occ(*seg, 1.5), hu_marrow)
    for loc, hw, hd, h, _ in segs[:3]:  # sacral canal
        sdf, _ = ellipse(
            loc.a, loc.b - np.float32(0.45 * hd), 0.22 * hw, 0.3 * hd, loc.w[0], loc.w[1]
        )
        cv.paint(
            loc.box,
            ramp(sdf) * ramp((np.abs(loc.c) - np.float32(h / 2 + 1)) / np.float32(loc.w[2])),
            10.0,
        )


def paint_spine(cv: Canvas, an: Anatomy) -> None:
    _paint_discs(cv, an)
    _paint_sacrum(cv, an)
    for i, v in enumerate(an.vertebrae):
        _paint_vertebra(cv, v, an.discs[i].height)
