"""Imported TotalSegmentator masks (``--masks``): layouts, alignment, posterior elements.

The generator's ``segmentation.nii.gz`` uses TotalSegmentator v2 ids, so it stands in for
TotalSegmentator output; ``bodies.nii.gz`` (posterior elements excluded) is the reference
for the body-only rule.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from engine.anatomy.labels import BODY_LEVELS
from engine.anatomy.masks import TOTALSEG_IDS, load_masks
from engine.errors import VfriskError
from engine.load import load_nifti, load_volume
from engine.synth.cohort import SynthRequest, synthesize

SEED = 11


def _series_volume(out: Path, row: pd.Series):  # noqa: ANN202 - Volume
    files = [p for p in (out / "archive" / row["folder"]).iterdir() if p.is_file()]
    if len(files) != row["n_files"]:  # flat layout: every series of the study in one folder
        files = [
            p for p in files
            if pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID == row["series_uid"]
        ]  # fmt: skip
    return load_volume(files)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    out = tmp_path_factory.mktemp("masks") / "cohort"
    synthesize(SynthRequest(out, patients=6, sites="dev:1,ext_a:1,ext_b:1", seed=SEED))
    series = pd.read_csv(out / "truth" / "series.csv")
    soft = series[(series["kind"] == "axial") & series["description"].str.contains("SOFT")]
    cases = []
    for _, row in soft.iterrows():
        truth = out / "truth" / row["patient_id"]
        cases.append((row["series_uid"], _series_volume(out, row), truth))
    return cases


def _write_like(
    path: Path, array: np.ndarray, reference: Path, origin_shift=(0.0, 0.0, 0.0)
) -> None:
    import SimpleITK as sitk

    ref = sitk.ReadImage(str(reference))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(ref.GetSpacing())
    image.SetOrigin(tuple(o + s for o, s in zip(ref.GetOrigin(), origin_shift, strict=True)))
    image.SetDirection(ref.GetDirection())
    sitk.WriteImage(image, str(path), useCompression=True)


def _per_structure(folder: Path, truth: Path) -> None:
    import SimpleITK as sitk

    multi = sitk.GetArrayFromImage(sitk.ReadImage(str(truth / "segmentation.nii.gz")))
    folder.mkdir(parents=True)
    for name, ts_id in TOTALSEG_IDS.items():
        _write_like(
            folder / f"{name}.nii.gz",
            (multi == ts_id).astype(np.uint8),
            truth / "segmentation.nii.gz",
        )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_per_structure_files_and_multilabel_file_give_the_same_segmentation(
    cohort: list[tuple], tmp_path: Path
) -> None:
    for uid, vol, truth in cohort[:3]:
        multi_dir, per_dir = tmp_path / "multi", tmp_path / "per"
        multi_dir.mkdir(exist_ok=True)
        shutil.copy(truth / "segmentation.nii.gz", multi_dir / f"{uid}.nii.gz")
        _per_structure(per_dir / uid, truth)
        a = load_masks(multi_dir, uid, vol.grid)
        b = load_masks(per_dir, uid, vol.grid)
        assert a.source == b.source == "masks"
        assert np.array_equal(a.labels, b.labels)
        assert a.levels == b.levels and a.flags == b.flags
        # a folder holding one multilabel file (TotalSegmentator --ml) is read the same way
        (tmp_path / "ml" / uid).mkdir(parents=True, exist_ok=True)
        shutil.copy(truth / "segmentation.nii.gz", tmp_path / "ml" / uid / "seg.nii.gz")
        assert np.array_equal(load_masks(tmp_path / "ml", uid, vol.grid).labels, a.labels)


def test_posterior_elements_are_removed_against_the_generator_bodies(
    cohort: list[tuple], tmp_path: Path
) -> None:
    dices = []
    for uid, vol, truth in cohort:
        shutil.copy(truth / "segmentation.nii.gz", tmp_path / f"{uid}.nii.gz")
        seg = load_masks(tmp_path, uid, vol.grid)
        bodies = np.rint(load_nifti(truth / "bodies.nii.gz", labels=True).hu).astype(np.uint8)
        for i in BODY_LEVELS:
            if (bodies == i).any():
                dices.append(_dice(seg.labels == i, bodies == i))
        # muscles are copied as they are
        multi = np.rint(load_nifti(truth / "segmentation.nii.gz", labels=True).hu)
        assert np.array_equal(seg.labels == 11, multi == TOTALSEG_IDS["iliopsoas_left"])
        assert np.array_equal(seg.labels == 14, multi == TOTALSEG_IDS["autochthon_right"])
    assert min(dices) >= 0.9, dices


def test_a_mask_on_another_grid_is_refused_as_misaligned(
    cohort: list[tuple], tmp_path: Path
) -> None:
    import SimpleITK as sitk

    uid, vol, truth = cohort[0]
    multi = sitk.GetArrayFromImage(sitk.ReadImage(str(truth / "segmentation.nii.gz")))
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    _write_like(shifted / f"{uid}.nii.gz", multi, truth / "segmentation.nii.gz", (12.0, 0.0, 0.0))
    with pytest.raises(VfriskError) as err:
        load_masks(shifted, uid, vol.grid)
    assert err.value.code == "masks_misaligned" and f"{uid}.nii.gz" in err.value.message
    cropped = tmp_path / "cropped"
    cropped.mkdir()
    _write_like(cropped / f"{uid}.nii.gz", multi[:, :-20], truth / "segmentation.nii.gz")
    with pytest.raises(VfriskError) as err:
        load_masks(cropped, uid, vol.grid)
    assert err.value.code == "masks_misaligned"


def test_missing_masks_are_refused_naming_the_file(cohort: list[tuple], tmp_path: Path) -> None:
    uid, vol, truth = cohort[0]
    with pytest.raises(VfriskError) as err:
        load_masks(tmp_path, uid, vol.grid)
    assert err.value.code == "masks_missing" and uid in err.value.message
    _per_structure(tmp_path / uid, truth)
    (tmp_path / uid / "iliopsoas_left.nii.gz").unlink()
    with pytest.raises(VfriskError) as err:
        load_masks(tmp_path, uid, vol.grid)
    assert err.value.code == "masks_missing" and "iliopsoas_left.nii.gz" in err.value.message


def test_a_level_outside_the_masks_is_flagged_missing(cohort: list[tuple], tmp_path: Path) -> None:
    uid, vol, truth = cohort[0]
    multi = np.rint(load_nifti(truth / "segmentation.nii.gz", labels=True).hu).astype(np.uint8)
    multi[multi == TOTALSEG_IDS["vertebrae_T12"]] = 0
    _write_like(tmp_path / f"{uid}.nii.gz", multi, truth / "segmentation.nii.gz")
    seg = load_masks(tmp_path, uid, vol.grid)
    assert "T12" not in seg.levels and "missing_T12" in seg.flags
    assert not (seg.labels == 1).any()
