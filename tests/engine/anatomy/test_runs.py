"""Run-based erosion and dilation give scipy's voxels exactly."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from engine.anatomy._runs import dilate, erode
from engine.anatomy.biomarkers import _ellipsoid


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return ((yy**2 + xx**2) <= r * r + 0.5)[None]


ELEMENTS = [
    _ellipsoid((1, 3, 3)),
    _ellipsoid((0, 2, 4)),
    _ellipsoid((2, 5, 4)),
    _disk(1),
    _disk(4),
    np.ones((5, 1, 1), bool),
    np.ones((3, 3, 3), bool),
]


@pytest.mark.parametrize("n", range(len(ELEMENTS)))
@pytest.mark.parametrize("density", [0.2, 0.6, 0.95])
def test_same_voxels_as_scipy(n: int, density: float) -> None:
    rng = np.random.default_rng(n)
    mask = ndi.uniform_filter(rng.random((13, 29, 31)), 3) < density  # blobs and specks
    mask[:, :2] = True  # touching the border
    element = ELEMENTS[n]
    np.testing.assert_array_equal(
        erode(mask, element), ndi.binary_erosion(mask, structure=element, border_value=0)
    )
    np.testing.assert_array_equal(dilate(mask, element), ndi.binary_dilation(mask, element))


def test_elements_that_are_not_centred_runs_are_refused() -> None:
    mask = np.ones((3, 5, 5), bool)
    ring = _disk(2).copy()
    ring[0, 2, 2] = False  # a hole in the middle of a row
    with pytest.raises(ValueError, match="not a run"):
        erode(mask, ring)
    shifted = np.zeros((1, 1, 5), bool)
    shifted[0, 0, 2:] = True  # a run, off centre
    with pytest.raises(ValueError, match="not a run"):
        erode(mask, shifted)
    with pytest.raises(ValueError, match="odd sizes"):
        erode(mask, np.ones((2, 1, 1), bool))
    lopsided = np.zeros((3, 1, 1), bool)
    lopsided[1:] = True
    with pytest.raises(ValueError, match="symmetric"):
        dilate(mask, lopsided)
