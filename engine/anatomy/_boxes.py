"""Bounding boxes of the labels of a segmentation, found without a pass per label.

The anatomy stage's measurements (model patches, biomarkers, QA) each look at one
vertebral body and the muscles beside it, a few percent of a 512 x 512 x N volume. A
full-volume comparison per label (``labels == i``) costs more than the work inside the
box; :func:`label_boxes` finds every box at once (one reduction per axis over the
labelled slab, then ``scipy.ndimage.find_objects`` on the labelled sub-box).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Box", "label_boxes"]

#: (z, y, x) slices of a volume.
Box = tuple[slice, slice, slice]


def label_boxes(labels: np.ndarray) -> dict[int, Box]:
    """Bounding box of each label id present in ``labels``.

    Parameters
    ----------
    labels : np.ndarray
        uint8, shape (nz, ny, nx).

    Returns
    -------
    dict
        Label id -> (z, y, x) slices of the smallest box holding all its voxels; ids
        that do not occur are absent.
    """
    along_z = np.flatnonzero(labels.max(axis=(1, 2)))
    if along_z.size == 0:
        return {}
    k0, k1 = int(along_z[0]), int(along_z[-1]) + 1
    plane = labels[k0:k1].max(axis=0)
    rows, cols = np.flatnonzero(plane.max(axis=1)), np.flatnonzero(plane.max(axis=0))
    j0, j1, i0, i1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    offset = (k0, j0, i0)
    boxes = {}
    for n, found in enumerate(ndi.find_objects(labels[k0:k1, j0:j1, i0:i1]), 1):
        if found is not None:
            boxes[n] = tuple(
                slice(s.start + o, s.stop + o) for s, o in zip(found, offset, strict=True)
            )
    return boxes  # type: ignore[return-value]
