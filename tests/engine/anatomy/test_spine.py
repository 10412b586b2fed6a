"""Body finding in spines with several fractured levels (issue #4: levels right >= 99 %).

The patients are drawn with the project's generator (population row, anatomy, phantom,
scanner), with the prevalent fractures set on the row, and reconstructed in memory (no
DICOM); the reference is the phantom's body labels (``Phantom.bodies``, T12-L4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.anatomy.biomarkers import measure_biomarkers
from engine.anatomy.labels import BODY_LEVELS
from engine.anatomy.segment import segment
from engine.load import Volume, load_nifti, load_volume
from engine.synth.anatomy import sample_anatomy, scan_grid
from engine.synth.cohort import generate_patient
from engine.synth.phantom import render
from engine.synth.population import simulate_population
from engine.synth.profiles import load_profiles
from engine.synth.scanner import reconstruct

#: 4346 and 4348 lost T12-L1 (or every level) before issue #4's fix; 4344 passed before but
#: not with the wider crop alone (T11 then marked T12 as a canal, see ``_shadowed``)
SEEDS = (4344, 4346, 4348)


def _fractured_patient(
    site: str, fractures: dict[str, tuple[str, float]], seed: int, hu: float | None = None
) -> tuple[Volume, np.ndarray]:
    """A low-resolution soft-kernel CT of one generated patient and its body labels.

    Parameters
    ----------
    site : str
        Site profile (``ext_a``: 1 mm slices, ``ext_b``: 5 mm).
    fractures : dict
        Level -> (shape, height loss fraction); the other levels are left intact.
    seed : int
        Seeds the population row, the anatomy and the scanner noise.
    hu : float, optional
        Trabecular HU of every level (default: the population row's).

    Returns
    -------
    volume : Volume
        HU on the scan grid, T12 to L4 wholly in the scan.
    bodies : np.ndarray
        uint8, shape ``volume.grid.shape_zyx``: ``BODY_LEVELS`` ids.
    """
    profiles = load_profiles()
    row = simulate_population(1, {site: 1.0}, profiles, seed).iloc[0].to_dict()
    row.update(miss_t12=False, miss_l4=False, contrast=False)
    for level in ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"):
        shape, loss = fractures.get(level, ("", 0.0))
        row.update({f"shape_{level}": shape, f"height_loss_{level}": loss})
        row[f"cement_{level}"] = False
        if hu is not None:
            row[f"hu_{level}"] = hu
    rng = np.random.default_rng([seed, 1])
    anatomy = sample_anatomy(row, rng)
    profile = profiles[site]
    grid = scan_grid(anatomy, profile, "low", rng)
    phantom = render(anatomy, grid)
    hu = reconstruct(
        phantom.hu, grid, kernel="soft", noise_sd=profile.noise_sd_hu,
        hu_offset=profile.hu_offset, rng=np.random.default_rng([seed, 2]),
    )  # fmt: skip
    return Volume(hu.astype(np.float32), grid, (), f"{site} seed {seed}"), phantom.bodies


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


@pytest.mark.parametrize("seed", SEEDS)
def test_wedged_lumbar_spine_keeps_every_level_against_phantom(seed: int) -> None:
    # VFEXTA000013 of `bench/anatomy_accuracy.py --prevalent-ratio 6` (seed 9001): the
    # wedges (L3 grade 3, T12 and L1 grade 1) tilt the column above L3 forward by ~30 deg,
    # so T12 and L1 lay in front of the body crop and went unlabelled
    fractures = {"T12": ("wedge", 0.23), "L1": ("wedge", 0.21), "L3": ("wedge", 0.52)}
    volume, bodies = _fractured_patient("ext_a", fractures, seed)
    seg = segment(volume)
    assert seg.levels == tuple(BODY_LEVELS.values()), (seg.levels, seg.flags)
    for lab, name in BODY_LEVELS.items():
        # the bench's criterion for a right level label: Dice >= 0.5 with the true body
        d = _dice(seg.labels == lab, bodies == lab)
        assert d >= 0.5, (name, d)


def test_thick_slice_body_split_by_one_open_slice_is_joined_against_phantom() -> None:
    # 5 mm slices: the L2 shell stays open in one slice, which splits its hole in two; a
    # disc is also one slice there, so the halves were kept as two bodies and every level
    # below was named one too high (L3 and L4 Dice 0.0 before issue #4's fix)
    fractures = {"T12": ("wedge", 0.22), "L1": ("wedge", 0.3), "L4": ("biconcave", 0.3)}
    volume, bodies = _fractured_patient("ext_b", fractures, 4407)
    seg = segment(volume)
    assert seg.levels == tuple(BODY_LEVELS.values()), (seg.levels, seg.flags)
    for lab, name in BODY_LEVELS.items():
        d = _dice(seg.labels == lab, bodies == lab)
        assert d >= 0.5, (name, d)


def test_fragmented_column_is_found_against_generator_truth(tmp_path: Path) -> None:
    # VFDEV000039 of the development cohort `vfrisk synth --patients 800 --sites dev:1
    # --seed 2024 --resolution low`, regenerated alone (same row, same random streams;
    # VFDEV000176 and VFDEV000790 failed the same way): small osteoporotic vertebrae
    # (trabecular 30 HU) whose thin cortex the 3 mm column sample misses, so each vertebra
    # read as two facets and a spinous process, every patch < 100 mm^2: segment() raised
    # no_spine_found before nearby patches were grouped (issue 4)
    profiles = load_profiles()
    population = simulate_population(800, {"dev": 1.0}, profiles, 2024)
    patient_id = "VFDEV000039"
    row = population[population["patient_id"] == patient_id].iloc[0].to_dict()
    out = generate_patient(row, profiles["dev"], tmp_path / "a", tmp_path / "t", 2024, "low")
    uid = out.series[0]["series_uid"]
    files = sorted(
        (f for f in out.files if f["series_uid"] == uid), key=lambda f: f["instance_number"]
    )
    volume = load_volume([tmp_path / "a" / f["path"] for f in files])
    truth = load_nifti(tmp_path / "t" / patient_id / "bodies.nii.gz", labels=True).hu
    seg = segment(volume)
    assert seg.levels == tuple(BODY_LEVELS.values()), (seg.levels, seg.flags)
    for lab, name in BODY_LEVELS.items():
        # 0.93-0.96 after the fix
        d = _dice(seg.labels == lab, truth == lab)
        assert d >= 0.9, (name, d)


@pytest.mark.parametrize(("site", "seed"), [("ext_a", 4501), ("ext_b", 4502)])
def test_severely_osteoporotic_intact_spine_keeps_whole_bodies_against_phantom(
    site: str, seed: int
) -> None:
    # trabecular 35 HU (the generator's floor is 30) and sub-millimetre pixels: the 3 x 3
    # smoothing diluted the thin faint cortex below the shell thresholds, the ring opened
    # and each body was found in a few slices only (body Dice 0.2-0.6 here, read as
    # grade 3 collapses: 14 % of the intact levels at <= 50 HU read grade >= 2 on the
    # 1,400-patient study cohort before issue #4's fix)
    volume, bodies = _fractured_patient(site, {}, seed, hu=35.0)
    seg = segment(volume)
    assert seg.levels == tuple(BODY_LEVELS.values()), (seg.levels, seg.flags)
    for lab, name in BODY_LEVELS.items():
        d = _dice(seg.labels == lab, bodies == lab)
        assert d >= 0.85, (name, d)
    if site == "ext_a":  # 1 mm: no false collapse (5 mm grading is the open part of #4)
        marks = measure_biomarkers(volume.hu, seg, volume.source)
        grades = {lb.level: lb.genant_grade for lb in marks.levels}
        assert all(g in (0, 1, None) for g in grades.values()), grades


def _line_mean_everywhere(a: np.ndarray) -> np.ndarray:
    """The thin-line mean computed over the whole slab (the pp9 formulation): per pixel the
    largest mean of 3 pixels through it along a row, a column or a diagonal; -inf on the
    outermost rows and columns."""
    out = np.full(a.shape, -np.inf, a.dtype)
    inner = out[:, 1:-1, 1:-1]
    ny, nx = inner.shape[1:]
    for (j0, i0), (j1, i1) in (
        ((1, 0), (1, 2)),
        ((0, 1), (2, 1)),
        ((0, 0), (2, 2)),
        ((0, 2), (2, 0)),
    ):
        pair = a[:, j0 : j0 + ny, i0 : i0 + nx] + a[:, j1 : j1 + ny, i1 : i1 + nx]
        np.maximum(inner, pair, out=inner)
    inner += a[:, 1:-1, 1:-1]
    inner /= 3.0
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thin_lines_computed_where_they_can_count_give_the_whole_slab_answer(seed: int) -> None:
    from scipy import ndimage as ndi

    from engine.anatomy._spine import _FAINT_SHELL_HU, _RIDGE_HU, _SHELL_HU, _shell

    rng = np.random.default_rng(seed)
    raw = rng.normal(40.0, 60.0, (4, 64, 72)).astype(np.float32)
    yy, xx = np.mgrid[:64, :72]
    ring = np.abs(np.hypot(yy - 30, xx - 35) - 18) < 0.7  # a one-pixel faint cortex
    raw[:, ring] += rng.uniform(500.0, 800.0, size=(4, int(ring.sum()))).astype(np.float32)
    raw[:, :3, :] = 1200.0  # bone on the border: no line there
    raw[1, 40, 10:50] = 300.0  # exactly at the threshold
    smooth = ndi.uniform_filter(raw, size=(1, 3, 3))
    local = ndi.uniform_filter(smooth, size=(1, 11, 11))
    line = _line_mean_everywhere(raw)
    expected = (smooth > _SHELL_HU) | ((smooth > _FAINT_SHELL_HU) & (smooth - local > _RIDGE_HU))
    expected |= (line > _SHELL_HU) & (line - local > _RIDGE_HU)
    got = _shell(smooth, 0.65, raw)
    np.testing.assert_array_equal(got, expected)
    assert (got & ~(smooth > _SHELL_HU)).sum() > 50  # the thin lines did add pixels
