"""Bones of the phantom besides the spine: iliac wings (with the iliacus) and ribs 10-12."""

from __future__ import annotations

import math

import numpy as np

from engine.synth._canvas import Canvas, ellipse, ramp, zchunks
from engine.synth._torso import Track
from engine.synth.anatomy import Anatomy

__all__ = ["paint_pelvis", "paint_ribs"]


def paint_pelvis(cv: Canvas, an: Anatomy) -> None:
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
        for ks in zchunks(box):  # exact: every term is per voxel
            sub = (ks, box[1], box[2])
            z = cv.z[ks][:, None, None]
            f = np.clip((z - np.float32(z_bot)) / np.float32(z_top - z_bot), 0.0, 1.0)
            shrink = np.float32(0.6) + np.float32(0.4) * f  # the pelvis narrows caudally
            u = side * (cv.x[box[2]][None, None, :] - np.float32(xc))
            v = cv.y[box[1]][None, :, None] - np.float32(yc)
            e, _ = ellipse(u, v, rx * shrink, ry * (0.7 + 0.3 * f), 1.0, 1.0)  # mm
            post = np.clip(v / np.float32(ry), 0.0, 1.0)
            thick = np.float32(4.0) + np.float32(9.0) * post + np.float32(6.0) * (1.0 - f)
            keep = np.maximum(np.float32(-5.0) - u, np.float32(-0.8 * ry) - v)  # lateral, not front
            top = (z - np.float32(z_top)) / np.float32(dz)
            # iliacus on the inner (anteromedial) surface, continuous with the psoas
            il = np.maximum(np.abs(e + thick / 2 + 9.0) - 9.0, keep) / np.float32(dx)
            il_top = (z - np.float32(z_top - 15.0)) / np.float32(dz)
            cv.paint(sub, ramp(il) * ramp(il_top), an.psoas_hu, lab_il)
            for k, hu, lab in ((0.0, 850.0, label), (1.6, 240.0, 0)):
                band = np.maximum(np.abs(e) - (thick / 2 - k), keep) / np.float32(dx)
                cv.paint(sub, ramp(band) * ramp(top + np.float32(k / dz)), hu, lab)


def paint_ribs(cv: Canvas, an: Anatomy, track: Track) -> None:
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
            for ks in zchunks(box):
                sub = (ks, box[1], box[2])
                u = side * (cv.x[box[2]][None, None, :] - np.float32(v.center[0]))
                vv = cv.y[box[1]][None, :, None] - np.float32(yc)
                semi_v = np.where(vv > 0, np.float32(bp), np.float32(ba))
                e, _ = ellipse(u, vv, np.float32(ar), semi_v, 1.0, 1.0)  # mm from the rib line
                t = np.arctan2(vv / semi_v, np.maximum(u, 1e-3) / np.float32(ar))
                zc = np.float32(z0) - np.float32(drop) * (np.float32(t0) - t) / np.float32(t0 - t1)
                dzr = cv.z[ks][:, None, None] - zc
                ends = np.maximum(t - np.float32(t0), np.float32(t1) - t) * np.float32(ar)
                for k, hu, lab in ((0.0, 750.0, label), (1.2, 200.0, 0)):
                    sdf, _ = ellipse(e, dzr, 3.8 * s - k, 6.5 * s - k, dx, dz)
                    cv.paint(sub, ramp(np.maximum(sdf, (ends + k) / np.float32(dx))), hu, lab)
            # neck: from the costal facet of the body to the start of the arc
            p0 = np.array([v.center[0] + side * 0.45 * v.width, v.center[1] + 0.3 * v.depth, z0])
            p1 = np.array([v.center[0] + side * ar * math.cos(t0), yc + bp * math.sin(t0), z0])
            _capsule(cv, p0, p1, 4.0 * s, 750.0, label)


def _capsule(cv: Canvas, p0: np.ndarray, p1: np.ndarray, r: float, hu: float, label: int) -> None:
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
    cv.paint(box, ramp((dist - np.float32(r)) / np.float32(dx)), hu, label)
