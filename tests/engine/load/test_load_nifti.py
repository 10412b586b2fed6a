"""NIfTI through ``load_volume``: LPS direction to the canonical orientation, beads in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from engine.load import load_nifti, load_volume


def _bead_volume(seed: int) -> np.ndarray:
    """float32 (nz, ny, nx) = (10, 14, 18) noise with one 2000 HU voxel at (6, 4, 13)."""
    rng = np.random.default_rng(seed)
    hu = np.rint(rng.normal(0.0, 20.0, (10, 14, 18))).astype(np.float32)
    hu[6, 4, 13] = 2000.0
    return hu


def _write(path: Path, array: np.ndarray, direction: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.7, 2.5))
    image.SetOrigin((-12.0, 30.0, 400.0))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    sitk.WriteImage(image, str(path))
    return image


def _rotation_z(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


@pytest.mark.parametrize(
    "direction",
    [
        np.eye(3),
        np.diag([-1.0, -1.0, 1.0]),  # RAS-stored file, as many converters write
        np.diag([1.0, 1.0, -1.0]),  # slices stored head to feet
        np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]]),  # rows and columns swapped
    ],
    ids=["identity", "ras", "head_to_feet", "transposed"],
)
def test_nifti_orientation_against_simpleitk(tmp_path: Path, direction: np.ndarray) -> None:
    # reference call: sitk.DICOMOrient(sitk.ReadImage(path), "LPS")
    path = tmp_path / "ct.nii.gz"
    image = _write(path, _bead_volume(30), direction)
    volume = load_volume(path)
    reference = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    np.testing.assert_allclose(reference.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    np.testing.assert_array_equal(volume.hu, sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(volume.grid.origin_xyz, reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.grid.spacing_zyx, reference.GetSpacing()[::-1], rtol=1e-6)
    assert volume.warnings == () and volume.source == str(path)
    # the bead is where SimpleITK's physical-point transform puts it
    expected = image.TransformIndexToPhysicalPoint((13, 4, 6))
    k, j, i = np.unravel_index(np.argmax(volume.hu), volume.hu.shape)
    np.testing.assert_allclose(volume.grid.to_patient((k, j, i)), expected, atol=1e-3)


def test_oblique_nifti_is_resampled_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "oblique.nii"
    hu = np.zeros((10, 14, 18), dtype=np.float32)
    hu[4:7, 5:8, 8:11] = 1000.0  # a 3-voxel cube: its centroid survives trilinear resampling
    image = _write(path, hu, _rotation_z(8.0))
    volume = load_nifti(path)
    assert "oblique" in volume.warnings[0]
    expected = np.array(image.TransformContinuousIndexToPhysicalPoint((9.0, 6.0, 5.0)))
    mask = volume.hu > 100
    w = volume.hu[mask]
    centroid = [np.sum(idx * w) / w.sum() for idx in np.nonzero(mask)]
    found = np.array(volume.grid.to_patient(tuple(centroid)))
    assert np.all(np.abs(found - expected) <= np.array(volume.grid.spacing_zyx[::-1]) / 2)
    labels = load_nifti(path, labels=True)
    assert set(np.unique(labels.hu)) <= {0.0, 1000.0}  # nearest neighbour, background 0
