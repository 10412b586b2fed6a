"""Tests of the synthetic phantom: anatomy sampling, scan grids and rendering."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import pytest

from engine.geometry import Grid
from engine.synth.anatomy import Anatomy, level_extent_z, sample_anatomy, scan_grid
from engine.synth.labels import BODY_LABELS, LABELS, LEVEL_LABEL, LEVELS, MODEL_LEVELS
from engine.synth.phantom import render
from engine.synth.profiles import load_profiles

_BODY_ID = {name: i for i, name in BODY_LABELS.items()}


def _patient(**overrides: Any) -> dict[str, Any]:
    """A population row as ``engine.synth.population`` writes it."""
    p: dict[str, Any] = dict(
        sex="F",
        age=72.0,
        height_cm=170.0,
        weight_kg=72.0,
        bmi=25.0,
        psoas_area_cm2=7.0,
        paraspinal_area_cm2=19.0,
        psoas_hu=46.0,
        paraspinal_hu=40.0,
        frailty=0.2,
        contrast=False,
        miss_t12=False,
        miss_l4=False,
    )
    for i, level in enumerate(LEVELS):
        p.update(
            {
                f"hu_{level}": 160.0 - 4.0 * i,
                f"grade_{level}": 0,
                f"shape_{level}": "",
                f"height_loss_{level}": 0.0,
                f"cement_{level}": False,
            }
        )
    p.update(overrides)
    return p


def _anatomy(seed: int = 0, **overrides: Any) -> Anatomy:
    return sample_anatomy(_patient(**overrides), np.random.default_rng(seed))


def _box_grid(an: Anatomy, level: str, step: float = 0.5, margin: float = 40.0) -> Grid:
    """A fine isotropic grid around one vertebral body (and its neighbours' muscles)."""
    x, y, z = an.vertebra(level).center
    n = int(2 * margin / step) + 1
    return Grid((x - margin, y - margin, z - margin), (step, step, step), (n, n, n))


def _local_coords(grid: Grid, an: Anatomy, level: str) -> tuple[np.ndarray, ...]:
    """Local (a, b, c) mm of every voxel in the vertebra's tilted frame, shape (nz, ny, nx)."""
    v = an.vertebra(level)
    z, y, x = np.meshgrid(grid.axis_z(), grid.axis_y(), grid.axis_x(), indexing="ij")
    dy, dz = y - v.center[1], z - v.center[2]
    ct, st = math.cos(v.tilt), math.sin(v.tilt)
    return x - v.center[0], dy * ct + dz * st, dz * ct - dy * st


@pytest.fixture(scope="module")
def profile():
    return load_profiles()["ext_a"]


@pytest.fixture(scope="module")
def low_case(profile):
    an = _anatomy(1)
    grid = scan_grid(an, profile, "low", np.random.default_rng(2))
    return an, grid, render(an, grid)


def test_shapes_and_dtypes(low_case):
    an, grid, ph = low_case
    assert ph.hu.shape == ph.labels.shape == ph.bodies.shape == grid.shape_zyx
    assert ph.hu.dtype == np.float32
    assert ph.labels.dtype == ph.bodies.dtype == np.uint8
    assert set(np.unique(ph.labels)) <= set(LABELS) | {0}
    assert set(np.unique(ph.bodies)) <= set(BODY_LABELS) | {0}
    assert np.isfinite(ph.hu).all()


def test_grid_lattice_is_exact(profile):
    an = _anatomy(3)
    for res in ("full", "low"):
        g = scan_grid(an, profile, res, np.random.default_rng(4))
        dz, dy, dx = g.spacing_zyx
        assert dy == dx and dz == profile.slice_thickness_mm
        lo, hi = profile.pixel_spacing_mm
        assert lo - 1e-9 <= dx <= hi + 1e-9
        assert (dx * 512) == round(dx * 512)  # integer FOV (mm)
        assert g.origin_xyz[2] / dz == round(g.origin_xyz[2] / dz)
        # voxel centres on the lattice round(body_cx) + (m + 0.5) dx
        m = (g.origin_xyz[0] - round(an.body_cx)) / dx - 0.5
        assert abs(m - round(m)) < 1e-9
        if res == "full":
            assert g.shape_zyx[1:] == (512, 512)
            assert 300 <= g.shape_zyx[0] * dz <= 420


def test_labels_align_with_hu(low_case):
    an, grid, ph = low_case
    for level in MODEL_LEVELS:
        v = an.vertebra(level)
        k, j, i = (int(round(t)) for t in grid.to_index(v.center))
        core = ph.hu[k - 1 : k + 2, j - 3 : j + 4, i - 3 : i + 4]
        assert abs(float(core.mean()) - v.hu_trab) < 5.0, level
        assert (ph.bodies[k, j, i] == _BODY_ID[level]) and ph.labels[k, j, i] == LEVEL_LABEL[level]
        rim = ph.hu[k][ph.bodies[k] == _BODY_ID[level]].max()
        assert rim > v.hu_trab + 200.0, level  # cortical shell brighter
    assert abs(float(an.vertebra("L1").hu_trab) - _patient()["hu_L1"]) < 1e-9


def test_level_order_cranial_to_caudal(low_case):
    an, grid, ph = low_case
    z = grid.axis_z()
    centers = []
    for level in MODEL_LEVELS:
        ks = np.nonzero((ph.bodies == _BODY_ID[level]).any(axis=(1, 2)))[0]
        centers.append(z[ks].mean())
    # z grows towards the head: T12 above L1 above ... L4
    assert all(a > b for a, b in zip(centers, centers[1:], strict=False))
    ext = [level_extent_z(an, lv) for lv in LEVELS]
    assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip(ext, ext[1:], strict=False))


def test_sizes_within_reference_ranges():
    an = _anatomy(5)
    for level in ("L1", "L2", "L3", "L4"):
        v = an.vertebra(level)
        assert 23.0 <= v.height <= 29.0 and 39.0 <= v.width <= 51.0 and 29.0 <= v.depth <= 37.0
    t12 = an.vertebra("T12")
    assert 21.0 <= t12.height <= 26.0
    discs = [d.height for d in an.discs]  # T10/T11 ... L5/S1
    assert 5.5 <= discs[2] <= 8.5  # T12/L1
    assert all(7.5 <= h <= 12.5 for h in discs[4:7])  # L2/L3 .. L4/L5


def test_measured_body_height_from_labels():
    an = _anatomy(6)
    grid = _box_grid(an, "L2")
    ph = render(an, grid)
    a, b, c = _local_coords(grid, an, "L2")
    m = (ph.bodies == _BODY_ID["L2"]) & (np.abs(a) < 3) & (np.abs(b) < 3)
    height = c[m].max() - c[m].min() + grid.spacing_zyx[0]
    assert abs(height - an.vertebra("L2").height) < 2.5  # minus the 1 mm endplate dip


@pytest.mark.parametrize("shape", ["wedge", "biconcave", "crush"])
def test_genant_shapes(shape):
    an = _anatomy(7, **{"shape_L1": shape, "height_loss_L1": 0.3})
    v = an.vertebra("L1")
    grid = _box_grid(an, "L1")
    ph = render(an, grid)
    a, b, c = _local_coords(grid, an, "L1")
    body = ph.bodies == _BODY_ID["L1"]

    def h(lo: float, hi: float) -> float:
        m = body & (np.abs(a) < 2) & (b > lo) & (b < hi)
        return float(c[m].max() - c[m].min() + grid.spacing_zyx[0])

    d = v.depth
    ant, mid, post = h(-0.45 * d, -0.42 * d), h(-0.02 * d, 0.02 * d), h(0.36 * d, 0.4 * d)
    if shape == "wedge":
        assert ant / post == pytest.approx(0.7, abs=0.05)
    elif shape == "biconcave":
        assert mid / post == pytest.approx(0.7, abs=0.06)
        assert ant / post > 0.9
    else:
        assert post == pytest.approx(0.7 * v.height, abs=1.5)
        assert ant / post > 0.9


def _area_at_l3(an: Anatomy, ph, grid: Grid, labels: tuple[int, ...]) -> tuple[float, float]:
    k = int(round(grid.to_index(an.vertebra("L3").center)[0]))
    dz, dy, dx = grid.spacing_zyx
    out = []
    for lab in labels:
        m = ph.labels[k] == lab
        out.append((m.sum() * dx * dy / 100.0, float(ph.hu[k][m].mean())))
    return out


def test_muscle_areas_and_hu(low_case):
    an, grid, ph = low_case
    p = _patient()
    for lab in (88, 89):
        area, hu = _area_at_l3(an, ph, grid, (lab,))[0]
        assert area == pytest.approx(p["psoas_area_cm2"], rel=0.15)
        assert hu == pytest.approx(p["psoas_hu"], abs=5)
    for lab in (86, 87):
        area, hu = _area_at_l3(an, ph, grid, (lab,))[0]
        assert area == pytest.approx(p["paraspinal_area_cm2"], rel=0.15)
        assert hu == pytest.approx(p["paraspinal_hu"], abs=5)


def test_contrast_raises_trabecular_hu():
    plain, enhanced = _anatomy(8), _anatomy(8, contrast=True)
    for level in LEVELS:
        delta = enhanced.vertebra(level).hu_trab - plain.vertebra(level).hu_trab
        assert 10.0 <= delta <= 20.0
    assert enhanced.hu_aorta >= 150 and enhanced.hu_kidney >= 150 and plain.hu_aorta < 60


def test_missing_t12_and_l4(profile):
    for seed in range(3):
        an = _anatomy(seed, miss_t12=True, miss_l4=True)
        for res in ("full", "low"):
            g = scan_grid(an, profile, res, np.random.default_rng(seed))
            z = g.axis_z()
            t12_top = level_extent_z(an, "T12")[1]
            l4_bottom = level_extent_z(an, "L4")[0]
            assert t12_top - 16 <= z.max() <= t12_top - 5 + 1e-6
            assert l4_bottom + 5 - 1e-6 <= z.min() <= l4_bottom + 16


def test_deterministic(profile):
    arrays = []
    for _ in range(2):
        an = _anatomy(11, contrast=True, cement_L2=True)
        g = scan_grid(an, profile, "low", np.random.default_rng(12))
        ph = render(an, g)
        arrays.append((g, ph))
    (g1, p1), (g2, p2) = arrays
    assert g1 == g2
    assert np.array_equal(p1.hu, p2.hu) and np.array_equal(p1.labels, p2.labels)
    assert np.array_equal(p1.bodies, p2.bodies)


def test_low_grid_contains_model_levels_and_muscles(low_case):
    an, grid, ph = low_case
    present = set(np.unique(ph.labels))
    for level in MODEL_LEVELS:
        assert LEVEL_LABEL[level] in present
        ks = np.nonzero((ph.bodies == _BODY_ID[level]).any(axis=(1, 2)))[0]
        assert ks.min() > 0 and ks.max() < grid.shape_zyx[0] - 1  # not cut by the scan ends
    assert {86, 87, 88, 89} <= present
    z = grid.axis_z()
    ks = (z >= level_extent_z(an, "L4")[0]) & (z <= level_extent_z(an, "T12")[1])
    for lab in (86, 87, 88, 89):  # at the model levels muscles stay inside the FOV
        m = ph.labels[ks] == lab
        assert not (m[:, 0].any() or m[:, -1].any() or m[:, :, 0].any() or m[:, :, -1].any())


def test_cement_is_bright():
    an = _anatomy(13, cement_L3=True)
    grid = _box_grid(an, "L3", step=1.0)
    ph = render(an, grid)
    assert ph.hu[ph.bodies == _BODY_ID["L3"]].max() > 2500


def test_full_grid_has_context(profile):
    an = _anatomy(14, contrast=True)
    grid = scan_grid(an, profile, "full", np.random.default_rng(15))
    # every 10th slice of the full grid
    sub = dataclasses.replace(
        grid,
        origin_xyz=grid.origin_xyz[:2] + (grid.origin_xyz[2] + 5 * grid.spacing_zyx[0],),
        shape_zyx=(grid.shape_zyx[0] // 10, 512, 512),
        spacing_zyx=(grid.spacing_zyx[0] * 10, *grid.spacing_zyx[1:]),
    )
    ph = render(an, sub)
    present = set(np.unique(ph.labels))
    assert {2, 3, 5, 52, 77, 78, 25, 79} <= present
    assert present & {101, 102, 103, 113, 114, 115}
    assert (ph.hu < -900).any() and (ph.hu > 100).any()


@pytest.mark.slow
def test_full_grid_timing(profile):
    from engine.synth.scanner import reconstruct

    an = _anatomy(20)
    grid = scan_grid(an, profile, "full", np.random.default_rng(21))
    t0 = time.perf_counter()
    ph = render(an, grid)
    t1 = time.perf_counter()
    reconstruct(
        ph.hu, grid, kernel="soft", noise_sd=20.0, hu_offset=0.0, rng=np.random.default_rng(22)
    )
    t2 = time.perf_counter()
    print(f"\nfull grid {grid.shape_zyx}: render {t1 - t0:.2f} s, reconstruct {t2 - t1:.2f} s")
