"""engine.load.volume.thick_slices: a thick reconstruction from thin slices."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry import Grid
from engine.load.volume import Volume, thick_slices


def _volume(nz: int = 7) -> Volume:
    hu = np.arange(nz, dtype=np.float32)[:, None, None] * 10 + np.zeros((nz, 3, 4), np.float32)
    grid = Grid(origin_xyz=(-5.0, 2.0, 100.0), spacing_zyx=(2.5, 0.7, 0.8), shape_zyx=(nz, 3, 4))
    return Volume(hu=hu, grid=grid, warnings=("w",), source="1.2.3")


def test_each_slice_is_the_mean_of_its_slab_centred_where_the_slab_is() -> None:
    thin = _volume()
    for phase, means in ((0, [5.0, 25.0, 45.0]), (1, [15.0, 35.0, 55.0])):
        thick = thick_slices(thin, 2, phase)
        assert thick.hu.dtype == np.float32 and thick.hu.shape == (3, 3, 4)
        np.testing.assert_allclose(thick.hu[:, 0, 0], means)
        assert thick.grid.spacing_zyx == (5.0, 0.7, 0.8)
        # the centre of the first slab: between thin slices `phase` and `phase + 1`
        assert thick.grid.origin_xyz == (-5.0, 2.0, 100.0 + (phase + 0.5) * 2.5)
        assert thick.warnings == ("w",) and thick.source == "1.2.3"
    # where a thin slice of value v lay, the thick grid reads the slab around it
    thick = thick_slices(thin, 3, 2)
    assert thick.hu.shape[0] == 1 and thick.hu[0, 0, 0] == pytest.approx(30.0)
    assert thick.grid.axis_z()[0] == pytest.approx(thin.grid.axis_z()[3])


def test_factor_one_is_the_volume_itself_and_bad_requests_are_refused() -> None:
    thin = _volume()
    assert thick_slices(thin, 1) is thin
    for factor, phase in ((0, 0), (2, 2), (2, -1)):
        with pytest.raises(ValueError, match="factor"):
            thick_slices(thin, factor, phase)
    with pytest.raises(ValueError, match="7 slices cannot make one slab of 8"):
        thick_slices(thin, 8, 0)
