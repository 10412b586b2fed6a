"""Tests of scanner image formation: kernels, noise, calibration offset and the scout."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry import Grid
from engine.synth.scanner import HU_MAX, HU_MIN, localizer, reconstruct


def _grid(nz: int = 12, n: int = 96, dz: float = 2.5, dx: float = 0.75) -> Grid:
    return Grid((0.0, 0.0, 0.0), (dz, dx, dx), (nz, n, n))


def _step_phantom(grid: Grid) -> np.ndarray:
    """Water (0 HU) on the left half, bone (1000 HU) on the right half."""
    hu = np.zeros(grid.shape_zyx, np.float32)
    hu[:, :, grid.shape_zyx[2] // 2 :] = 1000.0
    return hu


@pytest.mark.parametrize("dz", [1.0, 2.5])
@pytest.mark.parametrize("kernel,sd", [("soft", 12.0), ("soft", 25.0), ("bone", 70.0)])
def test_noise_sd_and_offset(kernel, sd, dz):
    grid = _grid(dz=dz)
    hu = np.full(grid.shape_zyx, 40.0, np.float32)
    out = reconstruct(
        hu, grid, kernel=kernel, noise_sd=sd, hu_offset=6.0, rng=np.random.default_rng(0)
    )
    assert out.dtype == np.float32 and out.shape == hu.shape
    region = out[1:-1, 4:-4, 4:-4]
    assert float(region.std()) == pytest.approx(sd, rel=0.15)
    assert float(region.mean()) == pytest.approx(46.0, abs=1.0)


def test_noise_is_correlated_in_plane():
    grid = _grid()
    out = reconstruct(
        np.zeros(grid.shape_zyx, np.float32),
        grid,
        kernel="soft",
        noise_sd=20.0,
        hu_offset=0.0,
        rng=np.random.default_rng(1),
    )
    a = out[:, 4:-4, 4:-5].ravel()
    b = out[:, 4:-4, 5:-4].ravel()
    assert 0.2 < np.corrcoef(a, b)[0, 1] < 0.8


def test_without_noise_offset_only_and_range():
    grid = _grid()
    hu = np.full(grid.shape_zyx, 100.0, np.float32)
    hu[0, 0, 0], hu[0, 0, 1] = -3000.0, 5000.0
    out = reconstruct(
        hu, grid, kernel="soft", noise_sd=0.0, hu_offset=-8.0, rng=np.random.default_rng(2)
    )
    assert np.allclose(out[2:-2, 10:-10, 10:-10], 92.0, atol=1e-3)
    assert out.min() >= HU_MIN and out.max() <= HU_MAX


def test_bone_kernel_sharper_and_noisier():
    grid = _grid()
    hu = _step_phantom(grid)
    soft = reconstruct(
        hu, grid, kernel="soft", noise_sd=0.0, hu_offset=0.0, rng=np.random.default_rng(3)
    )
    bone = reconstruct(
        hu, grid, kernel="bone", noise_sd=0.0, hu_offset=0.0, rng=np.random.default_rng(3)
    )
    i = grid.shape_zyx[2] // 2
    grad_soft = np.abs(np.diff(soft[5, 40, i - 3 : i + 3])).max()
    grad_bone = np.abs(np.diff(bone[5, 40, i - 3 : i + 3])).max()
    assert grad_bone > grad_soft
    assert bone.max() > 1000.0 and bone.min() < 0.0  # edge overshoot of the unsharp mask
    assert soft.max() <= 1000.0 + 1e-3 and soft.min() >= -1e-3  # a blur never overshoots
    flat = np.zeros(grid.shape_zyx, np.float32)
    n_soft = reconstruct(
        flat, grid, kernel="soft", noise_sd=12.0, hu_offset=0.0, rng=np.random.default_rng(4)
    )
    n_bone = reconstruct(
        flat, grid, kernel="bone", noise_sd=70.0, hu_offset=0.0, rng=np.random.default_rng(4)
    )
    assert n_bone.std() > 3 * n_soft.std()


def test_reconstruct_deterministic_and_validates():
    grid = _grid()
    hu = _step_phantom(grid)
    a = reconstruct(
        hu, grid, kernel="bone", noise_sd=50.0, hu_offset=0.0, rng=np.random.default_rng(5)
    )
    b = reconstruct(
        hu, grid, kernel="bone", noise_sd=50.0, hu_offset=0.0, rng=np.random.default_rng(5)
    )
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="kernel"):
        reconstruct(
            hu, grid, kernel="sharp", noise_sd=1.0, hu_offset=0.0, rng=np.random.default_rng(5)
        )
    with pytest.raises(ValueError, match="shape"):
        reconstruct(
            hu[:-1], grid, kernel="soft", noise_sd=1.0, hu_offset=0.0, rng=np.random.default_rng(5)
        )


def test_localizer_shape_spacing_and_orientation():
    grid = _grid(nz=20, n=64, dz=2.5, dx=0.8)
    hu = np.full(grid.shape_zyx, -1000.0, np.float32)
    hu[:, 16:48, 16:48] = 0.0  # a water column
    hu[-1, 16:48, 30:34] = 1000.0  # bone in the most cranial slice
    img, spacing = localizer(hu, grid)
    assert img.shape == (20, 64) and img.dtype == np.uint16
    assert spacing == (2.5, 0.8)
    assert img.max() <= 4095
    assert img[5, 32] > img[5, 2]  # tissue brighter than air
    assert img[0, 32] > img[5, 32]  # row 0 is the head end, where the bone is
    assert img[0, 32] > img[0, 20]


def test_large_outputs_never_alias_live_arrays():
    # full-size volumes come from a recycling pool (engine.synth._pool): a buffer may be
    # handed out again only once every view of it has been dropped
    grid = _grid(nz=70, n=512, dz=2.5, dx=0.7)  # 73 MB, above the pool threshold
    hu = np.zeros(grid.shape_zyx, np.float32)
    kw = dict(kernel="soft", noise_sd=10.0, hu_offset=0.0)
    a = reconstruct(hu, grid, rng=np.random.default_rng(6), **kw)
    a_sum = float(a.sum(dtype=np.float64))
    view = a[3:5]
    del a
    b = reconstruct(hu, grid, rng=np.random.default_rng(7), **kw)
    assert not np.shares_memory(view, b)
    c = reconstruct(hu, grid, rng=np.random.default_rng(6), **kw)
    assert float(c.sum(dtype=np.float64)) == a_sum  # deterministic, b untouched
    assert not np.shares_memory(b, c) and not np.shares_memory(view, c)
