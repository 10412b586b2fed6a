"""Render an ``Anatomy`` into a noise-free HU volume with labels.

The public entry point of the phantom. The work is split by structure:

- ``engine.synth._canvas``: the canvas, local frames, signed distance fields and the
  partial-volume ramp every structure is painted with;
- ``engine.synth._torso``: table, skin, fat, abdominal wall and bowel (evaluated on
  stations about 8 mm apart along z and interpolated between them);
- ``engine.synth._organs``: liver, kidneys, vessels, retroperitoneal fat and muscles;
- ``engine.synth._bones``: iliac wings and the lower ribs;
- ``engine.synth._spine``: discs, sacrum and vertebrae with their posterior elements.

Structures are composited in painter's order, in that sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.geometry import Grid
from engine.synth._bones import paint_pelvis, paint_ribs
from engine.synth._canvas import Canvas
from engine.synth._organs import paint_muscles, paint_organs
from engine.synth._spine import paint_spine
from engine.synth._torso import Track, paint_torso
from engine.synth.anatomy import Anatomy

__all__ = ["Phantom", "render"]


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
    cv = Canvas(grid)
    track = Track(anatomy)
    paint_torso(cv, anatomy, track)
    paint_organs(cv, anatomy, track)
    paint_muscles(cv, anatomy, track)
    paint_pelvis(cv, anatomy)
    paint_ribs(cv, anatomy, track)
    paint_spine(cv, anatomy)
    return Phantom(hu=cv.hu, labels=cv.labels, bodies=cv.bodies)
