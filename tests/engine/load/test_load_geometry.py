"""Geometry of ``load_series``: beads written at known patient points are found there.

Every variant (shuffled or reversed files, feet-first, prone, transposed rows/columns,
Enhanced CT, a missing slice, gantry tilt) is built from a canonical volume whose truth
is known exactly; the non-tilted ones are also compared with SimpleITK's GDCM series
reader (reference call: ``sitk.DICOMOrient(reader.Execute(), "LPS")``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from engine.errors import VfriskError
from engine.geometry import Grid
from engine.load import AIR_HU, Volume, load_series, load_volume

# name -> ImageOrientationPatient (row direction, column direction)
IOPS = {
    "head_first_supine": (1, 0, 0, 0, 1, 0),
    "feet_first_supine": (-1, 0, 0, 0, 1, 0),
    "head_first_prone": (-1, 0, 0, 0, -1, 0),
    "feet_first_prone": (1, 0, 0, 0, -1, 0),
    "transposed": (0, 1, 0, 1, 0, 0),
}


def _sitk_lps(paths: list[Path]) -> sitk.Image:
    """The series through SimpleITK, reoriented to identity direction (LPS)."""
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(paths[0].parent))
    reader.SetFileNames(names)
    image = sitk.DICOMOrient(reader.Execute(), "LPS")
    np.testing.assert_allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-6)
    return image


def _assert_grid(found: Grid, expected: Grid) -> None:
    assert found.shape_zyx == expected.shape_zyx
    np.testing.assert_allclose(found.spacing_zyx, expected.spacing_zyx, rtol=1e-5)
    np.testing.assert_allclose(found.origin_xyz, expected.origin_xyz, atol=1e-4)


def _assert_bead(volume: Volume, expected_xyz: tuple[float, float, float]) -> None:
    k, j, i = np.unravel_index(np.argmax(volume.hu), volume.hu.shape)
    found = np.array(volume.grid.to_patient((k, j, i)))
    half_voxel = np.array(volume.grid.spacing_zyx[::-1]) / 2
    assert np.all(np.abs(found - np.array(expected_xyz)) <= half_voxel), (found, expected_xyz)


@pytest.mark.parametrize("order", ["shuffled", "reversed"])
@pytest.mark.parametrize("pose", sorted(IOPS))
def test_bead_and_values_against_simpleitk(
    mk: SimpleNamespace, tmp_path: Path, pose: str, order: str
) -> None:
    grid = mk.small_grid()
    hu = mk.phantom(grid, seed=1)
    frames, ipps, spacing = mk.frames_for_iop(hu, grid, IOPS[pose])
    paths = mk.write_classic(tmp_path / "s", frames, ipps, spacing, IOPS[pose], order=order, seed=2)

    volume = load_volume(paths)
    _assert_grid(volume.grid, grid)
    assert volume.hu.dtype == np.float32 and volume.hu.flags.c_contiguous
    np.testing.assert_array_equal(volume.hu, np.maximum(hu, AIR_HU))  # exact: flips only
    _assert_bead(volume, grid.to_patient(mk.bead_index(grid)))
    assert volume.warnings == ()
    assert volume.source == str(pydicom.dcmread(paths[0]).SeriesInstanceUID)

    image = _sitk_lps(paths)
    np.testing.assert_allclose(image.GetOrigin(), volume.grid.origin_xyz, atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), volume.grid.spacing_zyx[::-1], rtol=1e-5)
    reference = np.maximum(sitk.GetArrayFromImage(image).astype(np.float32), AIR_HU)
    np.testing.assert_array_equal(volume.hu, reference)


def test_enhanced_ct_bead_against_simpleitk(mk: SimpleNamespace, tmp_path: Path) -> None:
    grid = mk.small_grid()
    hu = mk.phantom(grid, seed=3)
    iop = IOPS["feet_first_supine"]
    frames, ipps, spacing = mk.frames_for_iop(hu, grid, iop)
    # per-frame rescale differs between frames (Pixel Value Transformation per frame)
    intercepts = [-1024.0 if k % 2 else -1000.0 for k in range(len(frames))]
    path = mk.write_enhanced(tmp_path / "enhanced.dcm", frames, ipps, spacing, iop,
                          seed=4, intercepts=intercepts)  # fmt: skip

    volume = load_volume(path)
    _assert_grid(volume.grid, grid)
    np.testing.assert_array_equal(volume.hu, np.maximum(hu, AIR_HU))
    _assert_bead(volume, grid.to_patient(mk.bead_index(grid)))

    # SimpleITK (GDCM 3) reads the frames in file order but applies the first frame's
    # rescale to all of them and ignores the shared PixelMeasures, so it is the reference
    # for stored pixel values only; geometry is checked by the bead above.
    # reference call: sitk.GetArrayFromImage(sitk.ReadImage(path)) - intercept of frame 0
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    order = np.random.default_rng(4).permutation(len(frames))  # write_enhanced's order
    for n, k in enumerate(order):
        plane = stored[n] - intercepts[order[0]] + intercepts[k]
        # feet-first: IOP row direction -x, so the canonical plane is the frame mirrored
        np.testing.assert_array_equal(volume.hu[k], np.maximum(plane, AIR_HU)[:, ::-1])


def test_missing_slice_is_interpolated_with_warning(mk: SimpleNamespace, tmp_path: Path) -> None:
    grid = mk.small_grid()
    hu = mk.phantom(grid, seed=5)
    iop = IOPS["head_first_supine"]
    frames, ipps, spacing = mk.frames_for_iop(hu, grid, iop)
    missing = 4
    paths = mk.write_classic(tmp_path / "s", frames, ipps, spacing, iop, skip=[missing], seed=6)

    volume = load_series(paths)
    _assert_grid(volume.grid, grid)
    expected = np.maximum(hu, AIR_HU)
    keep = [k for k in range(grid.shape_zyx[0]) if k != missing]
    np.testing.assert_array_equal(volume.hu[keep], expected[keep])
    np.testing.assert_allclose(
        volume.hu[missing], (expected[missing - 1] + expected[missing + 1]) / 2, atol=1e-3
    )
    _assert_bead(volume, grid.to_patient(mk.bead_index(grid)))
    z = grid.axis_z()[missing]
    assert len(volume.warnings) == 1
    assert volume.warnings[0].startswith(f"interpolated 1 missing slice at z={z:.2f}")

    # SimpleITK stacks the 11 slices it has; they equal ours where we did not interpolate
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(paths[0].parent)))
    reference = np.maximum(sitk.GetArrayFromImage(reader.Execute()), AIR_HU)
    np.testing.assert_array_equal(volume.hu[keep], reference)


def test_uneven_spacing_is_resampled_with_warning(mk: SimpleNamespace, tmp_path: Path) -> None:
    grid = mk.small_grid()
    hu = mk.phantom(grid, seed=7)
    iop = IOPS["head_first_supine"]
    frames, ipps, spacing = mk.frames_for_iop(hu, grid, iop)
    ipps = [(x, y, z + (0.6 if k == 5 else 0.0)) for k, (x, y, z) in enumerate(ipps)]
    volume = load_series(mk.write_classic(tmp_path / "s", frames, ipps, spacing, iop))
    _assert_grid(volume.grid, grid)
    assert "uneven slice spacing" in volume.warnings[0]
    np.testing.assert_array_equal(volume.hu[:5], np.maximum(hu, AIR_HU)[:5])


@pytest.mark.parametrize("tilt_deg", [6.0, -6.0])
def test_gantry_tilt_bead_against_analytic_position(
    mk: SimpleNamespace, tmp_path: Path, tilt_deg: float
) -> None:
    # reference: the analytic bead centre (SimpleITK does not correct tilt)
    bead = (2.3, 4.4, 3.1)
    paths = mk.tilted_series(tmp_path / "tilt", bead, tilt_deg, seed=8)
    volume = load_series(paths)
    assert any(f"gantry tilt of {abs(tilt_deg):.1f} degrees" in w for w in volume.warnings)
    np.testing.assert_allclose(volume.grid.spacing_zyx, (2.0, 1.0, 1.0), rtol=1e-6)

    mask = volume.hu > 300.0
    weights = volume.hu[mask] - 300.0
    k, j, i = (np.sum(idx * weights) / weights.sum() for idx in np.nonzero(mask))
    found = np.array(volume.grid.to_patient((k, j, i)))
    half_voxel = np.array(volume.grid.spacing_zyx[::-1]) / 2
    assert np.all(np.abs(found - bead) <= half_voxel), (found, bead)
    assert np.abs(found - bead).max() < 0.35  # trilinear resampling keeps the centroid

    # without shear correction the bead would sit r dy sin(t) ~ 2.6 mm off in z
    slices = sorted((pydicom.dcmread(p) for p in paths), key=lambda d: d.ImagePositionPatient[2])
    naive = np.stack([d.pixel_array for d in slices])
    s, r, c = np.unravel_index(np.argmax(naive), naive.shape)
    naive_z = float(slices[s].ImagePositionPatient[2])
    assert abs(naive_z - bead[2]) > half_voxel[2]


def test_duplicates_are_dropped(mk: SimpleNamespace, tmp_path: Path) -> None:
    grid = mk.small_grid()
    hu = mk.phantom(grid, seed=9)
    iop = IOPS["head_first_supine"]
    frames, ipps, spacing = mk.frames_for_iop(hu, grid, iop)
    paths = mk.write_classic(tmp_path / "s", frames, ipps, spacing, iop, seed=10)
    copy = tmp_path / "s" / "copy_of_first"
    shutil.copy(paths[0], copy)  # same SOPInstanceUID twice
    resent = pydicom.dcmread(paths[3])  # the same image re-sent under a new UID
    resent.SOPInstanceUID = resent.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    resent.save_as(tmp_path / "s" / "resent", enforce_file_format=True)

    volume = load_series([*paths, copy, tmp_path / "s" / "resent"])
    np.testing.assert_array_equal(volume.hu, np.maximum(hu, AIR_HU))
    assert volume.warnings == ()

    different = pydicom.dcmread(paths[3])
    different.SOPInstanceUID = different.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.6"
    different.PixelData = (different.pixel_array + 1).astype(np.int16).tobytes()
    different.save_as(tmp_path / "different", enforce_file_format=True)
    with pytest.raises(VfriskError) as err:
        load_series([*paths, tmp_path / "different"])
    assert err.value.code == "overlapping_slices"
