"""`vfrisk synth` end to end: every file valid, geometry intact, truth aligned, determinism.

The module fixture generates one small low-resolution cohort over the three shipped sites
with profiles that always add a bone-kernel reconstruction and a derived reformat, so that
every kind of object the generator writes is present.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from engine.errors import VfriskError
from engine.synth.cohort import SynthRequest, synthesize
from engine.synth.labels import BODY_LABELS, LABELS
from engine.synth.population import CLINICAL_COLUMNS
from engine.synth.profiles import DEFAULT_PROFILES

SEED = 11


def _profiles_with_everything(folder: Path) -> Path:
    text = DEFAULT_PROFILES.read_text()
    for key in ("p_bone_recon", "p_derived"):
        text = re.sub(rf"^{key} = [0-9.]+", f"{key} = 1.0", text, flags=re.M)
    path = folder / "profiles.toml"
    path.write_text(text)
    return path


def _generate(out: Path, profiles: Path, workers: int = 1, seed: int = SEED) -> None:
    synthesize(
        SynthRequest(out=out, patients=3, sites="dev,ext_a,ext_b", seed=seed,
                     resolution="low", workers=workers, profiles_path=profiles)
    )  # fmt: skip


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    out = root / "cohort"
    _generate(out, _profiles_with_everything(root))
    return out


def _series(cohort: Path) -> pd.DataFrame:
    return pd.read_csv(cohort / "truth" / "series.csv")


def _files(cohort: Path) -> list[Path]:
    return sorted(p for p in (cohort / "archive").rglob("*") if p.is_file())


def _read_ct(cohort: Path, series_uid: str, folder: str) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(cohort / "archive" / folder), series_uid)
    reader.SetFileNames(names)
    return reader.Execute()


def test_cohort_has_every_object_kind_and_tables(cohort: Path) -> None:
    series = _series(cohort)
    assert set(series["kind"]) >= {"localizer", "axial", "reformat", "sr"}
    assert (series.groupby("patient_id")["kind"].apply(lambda k: (k == "axial").sum()) == 2).all()
    clinical = pd.read_csv(cohort / "clinical.csv")
    assert tuple(clinical.columns) == CLINICAL_COLUMNS and len(clinical) == 3
    assert sorted(clinical["site"]) == ["dev", "ext_a", "ext_b"]
    assert len(_files(cohort)) == series["n_files"].sum()
    listed = pd.read_csv(cohort / "truth" / "files.csv")
    assert sorted(cohort / "archive" / p for p in listed["path"]) == _files(cohort)
    names = [p.name for p in _files(cohort)]
    assert any(not n.endswith(".dcm") for n in names) and any(n.endswith(".dcm") for n in names)
    depths = {len(p.relative_to(cohort / "archive").parts) for p in _files(cohort)}
    assert len(depths) >= 2, "folders of varying depth"


def test_every_file_reads_with_pydicom_and_passes_dciodvfy(
    cohort: Path, dciodvfy_errors: Callable[[Path], list[str]]
) -> None:
    for path in _files(cohort):
        ds = pydicom.dcmread(path)
        assert ds.PatientID.startswith("VF")
        if "PixelData" in ds:
            assert ds.pixel_array.size > 0
        assert dciodvfy_errors(path) == [], path


def test_every_axial_series_reads_with_simpleitk_in_hu(cohort: Path) -> None:
    for row in _series(cohort).query("kind == 'axial'").itertuples():
        image = _read_ct(cohort, row.series_uid, row.folder)
        assert image.GetSize()[2] == row.n_files
        hu = sitk.GetArrayViewFromImage(image)
        assert -1100 < np.percentile(hu, 1) < -50 and 300 < np.percentile(hu, 99.9) < 3100
        np.testing.assert_allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-6)


def test_label_maps_align_with_the_ct_and_carry_the_truth(cohort: Path) -> None:
    patients = pd.read_csv(cohort / "truth" / "patients.csv").set_index("patient_id")
    soft = _series(cohort).query("kind == 'axial' and series_number == 2")
    for row in soft.itertuples():
        ct = _read_ct(cohort, row.series_uid, row.folder)
        for name in ("segmentation", "bodies"):
            labels = sitk.ReadImage(str(cohort / "truth" / row.patient_id / f"{name}.nii.gz"))
            assert labels.GetSize() == ct.GetSize()
            np.testing.assert_allclose(labels.GetOrigin(), ct.GetOrigin(), atol=1e-3)
            np.testing.assert_allclose(labels.GetSpacing(), ct.GetSpacing(), atol=1e-4)
            np.testing.assert_allclose(labels.GetDirection(), ct.GetDirection(), atol=1e-6)
        hu = sitk.GetArrayFromImage(ct).astype(np.float32)
        bodies = sitk.GetArrayFromImage(
            sitk.ReadImage(str(cohort / "truth" / row.patient_id / "bodies.nii.gz"))
        )
        seg = sitk.GetArrayFromImage(
            sitk.ReadImage(str(cohort / "truth" / row.patient_id / "segmentation.nii.gz"))
        )
        truth = patients.loc[row.patient_id]
        # L3 body interior (eroded to skip the cortex): the patient's trabecular HU plus the
        # site offset and contrast (10-20 HU), within noise.
        l3 = bodies == next(k for k, v in BODY_LABELS.items() if v == "L3")
        from scipy.ndimage import binary_erosion

        core = binary_erosion(l3, iterations=2)
        measured = float(np.median(hu[core]))
        expected = truth["hu_L3"] + {"dev": 0.0, "ext_a": 6.0, "ext_b": -8.0}[truth["site"]]
        expected += 15.0 if truth["contrast"] else 0.0
        assert abs(measured - expected) < 20, (row.patient_id, measured, expected)
        psoas = np.isin(seg, [k for k, v in LABELS.items() if v.startswith("iliopsoas")])
        assert abs(float(np.median(hu[binary_erosion(psoas)])) - truth["psoas_hu"]) < 15


def test_same_seed_gives_identical_bytes_whatever_the_workers(cohort: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    _generate(again, _profiles_with_everything(tmp_path), workers=2)
    first, second = _files(cohort), _files(again)
    assert [p.relative_to(cohort) for p in first] == [p.relative_to(again) for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a
    assert (cohort / "clinical.csv").read_bytes() == (again / "clinical.csv").read_bytes()


def test_another_seed_gives_other_pixels(cohort: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    _generate(other, _profiles_with_everything(tmp_path), seed=SEED + 1)
    row = _series(other).query("kind == 'axial'").iloc[0]
    mine = _series(cohort).query("kind == 'axial'").iloc[0]
    a = pydicom.dcmread(next((cohort / "archive" / mine.folder).iterdir())).pixel_array
    b = pydicom.dcmread(next((other / "archive" / row.folder).iterdir())).pixel_array
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_levels_table_reports_missing_coverage(cohort: Path) -> None:
    levels = pd.read_csv(cohort / "truth" / "levels.csv")
    patients = pd.read_csv(cohort / "truth" / "patients.csv").set_index("patient_id")
    for pid, group in levels.groupby("patient_id"):
        in_scan = group.set_index("level")["in_scan"]
        assert in_scan["L1"] and in_scan["L2"] and in_scan["L3"]
        assert bool(in_scan["T12"]) == (not patients.loc[pid, "miss_t12"])
        assert bool(in_scan["L4"]) == (not patients.loc[pid, "miss_l4"])


def test_existing_output_is_never_overwritten(cohort: Path) -> None:
    with pytest.raises(VfriskError) as err:
        _generate(cohort, DEFAULT_PROFILES)
    assert err.value.code == "output_exists" and "clinical.csv" in err.value.message


@pytest.mark.slow
def test_full_resolution_patient_per_site(tmp_path: Path, dciodvfy_errors: Callable) -> None:
    out = tmp_path / "full"
    synthesize(SynthRequest(out=out, patients=3, sites="dev,ext_a,ext_b", seed=2,
                            resolution="full", workers=2))  # fmt: skip
    patients = pd.read_csv(out / "truth" / "patients.csv").set_index("patient_id")
    for row in _series(out).query("kind == 'axial' and series_number == 2").itertuples():
        image = _read_ct(out, row.series_uid, row.folder)
        assert image.GetSize()[:2] == (512, 512)
        assert 0.55 <= image.GetSpacing()[0] <= 0.95
        z_extent = image.GetSize()[2] * image.GetSpacing()[2]
        if patients.loc[row.patient_id, ["miss_t12", "miss_l4"]].any():
            assert 150 < z_extent < 300, "T12 or L4 cut off"
        else:
            assert 250 < z_extent < 450, "about T10 to the sacrum"
        first = sorted((out / "archive" / row.folder).iterdir())[0]
        assert dciodvfy_errors(first) == []


@pytest.mark.slow
def test_tables_only_20k_cohort_hits_the_target_ranges_against_lifelines(tmp_path: Path) -> None:
    """Issue targets at the external sites: 5-year incidence 8-15 %, c-index of the oracle
    0.75-0.80 and of the FRAX-like score 0.62-0.68, and oracle_full > image > bone.

    Reference: lifelines.utils.concordance_index(time, -risk, event), deaths censored.
    """
    from lifelines import AalenJohansenFitter
    from lifelines.utils import concordance_index

    out = tmp_path / "tables"
    synthesize(SynthRequest(out=out, patients=20_000, sites="dev:0.5,ext_a:0.25,ext_b:0.25",
                            seed=2026, tables_only=True))  # fmt: skip
    assert not (out / "archive").exists()
    clinical = pd.read_csv(out / "clinical.csv")
    truth = pd.read_csv(out / "truth" / "patients.csv")
    ext = (clinical["site"] != "dev").to_numpy()
    time, event = clinical["followup_years"][ext], (clinical["event_type"][ext] == 1)

    def cindex(risk: pd.Series) -> float:
        return concordance_index(time, -risk[ext], event)

    ajf = AalenJohansenFitter(seed=0).fit(time, clinical["event_type"][ext], event_of_interest=1)
    incidence_5y = float(ajf.cumulative_density_.loc[:5.0].iloc[-1, 0])
    assert 0.08 <= incidence_5y <= 0.15
    c_full, c_image, c_bone = (cindex(truth[f"oracle_{k}_5y"]) for k in ("full", "image", "bone"))
    assert 0.75 <= c_full <= 0.80
    assert 0.62 <= cindex(clinical["frax_mof"]) <= 0.68
    assert c_full > c_image + 0.005 > c_bone + 0.01


def test_nifti_writer_matches_what_simpleitk_writes(tmp_path: Path) -> None:
    """The numpy NIfTI writer (no SimpleITK on the GPU device) reads back like SimpleITK's."""
    from engine.geometry import Grid
    from engine.synth.cohort import _write_nifti

    rng = np.random.default_rng(3)
    grid = Grid((-180.5, -200.25, 1234.0), (2.5, 0.7, 0.8), (7, 5, 4))
    for dtype in (np.uint8, np.int16, np.float32):
        array = rng.integers(0, 120, size=grid.shape_zyx).astype(dtype)
        ours = tmp_path / f"ours_{np.dtype(dtype).name}.nii.gz"
        _write_nifti(ours, array, grid)
        theirs = sitk.GetImageFromArray(array)
        theirs.SetSpacing((0.8, 0.7, 2.5))
        theirs.SetOrigin((-180.5, -200.25, 1234.0))
        image = sitk.ReadImage(str(ours))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)
        assert sitk.GetArrayFromImage(image).dtype == array.dtype
        assert image.GetSpacing() == pytest.approx(theirs.GetSpacing())
        assert image.GetOrigin() == pytest.approx(theirs.GetOrigin())
        assert image.GetDirection() == pytest.approx(theirs.GetDirection())
    with pytest.raises(ValueError, match="bool"):
        _write_nifti(tmp_path / "bad.nii.gz", np.zeros(grid.shape_zyx, bool), grid)
