"""The built-in localizer and segmenter: vertebral bodies T12-L4 and psoas/paraspinal.

Classical image analysis for the column, the bodies and their levels, and a small 2D
U-Net for the muscles whose weights ship with the code (``engine/anatomy/weights``, made
by ``vfrisk train-anatomy``); nothing is downloaded. The steps, each in its own module:

1. :mod:`engine.anatomy._spine` finds the vertebral column and each vertebral body by its
   cortical shell (bodies only: posterior elements excluded).
2. :mod:`engine.anatomy._levels` names the bodies anatomically: T12 is the lowest body
   carrying ribs, L5 the body flanked by the iliac wings above the sacrum; the others are
   counted from these anchors.
3. :mod:`engine.anatomy._muscles` labels psoas and paraspinal muscles with the network
   (``engine.anatomy.muscle_net``), within the labelled bodies' cranio-caudal extent
   (what the study uses, Kong et al. 2025).

A body cut by the first or last slice, or only inferred from a gap in the column (counted
for naming, not segmented), is not labelled; T12 or L4 absent or cut gives the
``missing_T12`` / ``missing_L4`` flags and ``levels`` holds only the levels present.
"""

from __future__ import annotations

import numpy as np

from engine.anatomy._levels import lateral_bone, name_bodies
from engine.anatomy._muscles import label_muscles
from engine.anatomy._spine import find_bodies, locate_column
from engine.anatomy.labels import BODY_LEVELS, Segmentation
from engine.errors import VfriskError
from engine.load import Volume

__all__ = ["MIN_SLICES", "segment"]

#: Fewer slices than this cannot hold a vertebral body with its discs.
MIN_SLICES = 4
_LEVEL_ID = {name: lab for lab, name in BODY_LEVELS.items()}


def segment(volume: Volume, device: str | None = None) -> Segmentation:
    """Label the vertebral bodies T12-L4 and the psoas and paraspinal muscles.

    Parameters
    ----------
    volume : Volume
        A loaded CT in HU on the canonical grid (any slice thickness up to 5 mm).
    device : {'cpu', 'cuda'}, optional
        Where the muscle network runs; default CUDA when PyTorch sees a device.

    Returns
    -------
    Segmentation
        ``labels`` uint8 of shape ``volume.grid.shape_zyx`` (bodies 1-5, muscles 11-14),
        ``levels`` cranial first, ``flags`` such as ``missing_T12``, source ``builtin``.

    Raises
    ------
    VfriskError
        ``too_few_slices``, ``empty_volume``, ``no_spine_found``, ``not_abdomen`` or
        ``no_level_anchor``, each naming the series.
    """
    hu, grid = volume.hu, volume.grid
    where = f"series {volume.source}"
    if grid.shape_zyx[0] < MIN_SLICES:
        raise VfriskError(
            "too_few_slices",
            f"{where} has {grid.shape_zyx[0]} slices; the anatomy stage needs at least "
            f"{MIN_SLICES} covering T12-L4",
        )
    # a strided look first: the full maximum is read only when the sample is all air
    if float(hu[::4, ::4, ::4].max()) <= -900.0 and float(hu.max()) <= -900.0:
        raise VfriskError("empty_volume", f"{where} holds only air (max {hu.max():.0f} HU)")
    column = locate_column(hu, grid)
    if column is None:
        raise VfriskError(
            "no_spine_found",
            f"{where}: no bone column was found in the body; is this a CT of the trunk?",
        )
    bodies, body_lab, (rows, cols) = find_bodies(hu, grid, column)
    if not bodies:
        raise VfriskError(
            "not_abdomen",
            f"{where}: bone was found but no vertebral bodies (a {column.width_mm:.0f} mm wide "
            "bone structure without vertebral shells); is this a head or limb CT?",
        )
    lateral = [lateral_bone(hu, grid, column, b) for b in bodies]
    names, flags = name_bodies(lateral)
    if all(n is None for n in names):
        raise VfriskError(
            "no_level_anchor",
            f"{where}: {len(bodies)} vertebral bodies found but neither ribs nor pelvis to "
            "name them; the scan must reach the last ribs (T12) or the iliac wings (L5)",
        )
    # everything below works on the column crop (the bodies lie in it) and the muscle
    # window: no pass over the whole 512 x 512 x N volume
    lut = np.zeros(256, np.uint8)
    present = []
    for n, (body, name) in enumerate(zip(bodies, names, strict=True), 1):
        if name in _LEVEL_ID and body.found and not body.touches_edge:
            lut[n] = _LEVEL_ID[name]
            present.append(name)
    levels = tuple(lv for lv in BODY_LEVELS.values() if lv in present)
    flags = flags + tuple(f"missing_{lv}" for lv in BODY_LEVELS.values() if lv not in present)
    labels = np.zeros(grid.shape_zyx, np.uint8)
    if levels:
        body_crop = lut[body_lab]
        labels[:, rows, cols] = body_crop
        label_muscles(hu, grid, labels, body_crop, (rows, cols), device=device)
    return Segmentation(labels=labels, grid=grid, levels=levels, flags=flags, source="builtin")
