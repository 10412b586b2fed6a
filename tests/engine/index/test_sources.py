"""Other sources: Enhanced CT (multi-frame), zip archives, NIfTI volumes, DICOMDIR."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.fileset import FileSet

from engine.store import Store


def test_enhanced_ct_counts_frames(tmp_path: Path, enhanced_writer, indexer) -> None:  # noqa: ANN001
    enhanced_writer(tmp_path / "a" / "enh" / "MF0001", frames=30, spacing=5.0)
    indexer(tmp_path / "a", tmp_path / "db.duckdb")
    s = Store(tmp_path / "db.duckdb").query("SELECT * FROM series")
    assert s.n_instances.tolist() == [1] and s.n_slices.tolist() == [30]
    assert s.z_extent_mm[0] == 145.0 and s.slice_thickness[0] == 2.0
    assert s.kernel[0] == "Br40" and s.kernel_class[0] == "soft"
    assert s.selected.tolist() == [True]
    i = Store(tmp_path / "db.duckdb").query("SELECT frames, frame_positions FROM instances")
    assert i.frames[0] == 30 and len(i.frame_positions[0]) == 30


def test_zip_members_are_indexed(tmp_path: Path, series_writer, indexer) -> None:  # noqa: ANN001
    paths = series_writer(tmp_path / "src", seed=3)
    (tmp_path / "a").mkdir()
    zpath = tmp_path / "a" / "export.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in paths:
            zf.write(p, f"study/series/{p.name}")
        zf.writestr("study/readme.txt", "not an image")
    (tmp_path / "a" / "broken.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    indexer(tmp_path / "a", tmp_path / "db.duckdb")
    store = Store(tmp_path / "db.duckdb")
    inst = store.query("SELECT path, source FROM instances ORDER BY position DESC")
    assert len(inst) == 30 and set(inst.source) == {"zip"}
    assert inst.path[0] == f"{zpath}!study/series/slice000.dcm"
    bad = store.query("SELECT path, reason_code FROM unreadable ORDER BY path")
    assert bad.reason_code.tolist() == ["bad_zip", "not_dicom"]
    assert bad.path[1].endswith("export.zip!study/readme.txt")
    assert store.query("SELECT selected FROM series").selected.tolist() == [True]


def _nifti(path: Path, slices: int = 30) -> None:
    image = sitk.GetImageFromArray(np.zeros((slices, 12, 14), dtype=np.int16))
    image.SetSpacing((0.8, 0.8, 4.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def test_nifti_ids_from_sidecar_and_from_path(tmp_path: Path, indexer) -> None:  # noqa: ANN001
    a = tmp_path / "a"
    _nifti(a / "nifti" / "scan.nii.gz")
    sidecar = {
        "PatientID": "NIFTI01", "PatientName": "SECRET^NAME", "StudyInstanceUID": "1.2.3.4",
        "StudyDate": "20190305", "SeriesInstanceUID": "1.2.3.4.5", "Modality": "CT",
        "ConvolutionKernel": "FC08", "SeriesNumber": 3,
    }  # fmt: skip
    (a / "nifti" / "scan.json").write_text(json.dumps(sidecar))
    _nifti(a / "PAT77" / "20200101_CT" / "vol.nii")
    indexer(a, tmp_path / "db.duckdb")
    store = Store(tmp_path / "db.duckdb")
    s = store.query("SELECT * FROM series ORDER BY patient_id").set_index("patient_id")
    assert list(s.index) == ["NIFTI01", "PAT77"]
    assert s.loc["NIFTI01", "series_uid"] == "1.2.3.4.5"
    assert s.loc["NIFTI01", "study_uid"] == "1.2.3.4"
    assert str(s.loc["NIFTI01", "study_date"])[:10] == "2019-03-05"
    assert s.loc["NIFTI01", "kernel_class"] == "soft"
    assert str(s.loc["PAT77", "study_date"])[:10] == "2020-01-01"
    assert (s.n_slices == 30).all() and (s.z_extent_mm == 116.0).all()
    assert s.selected.all() and (s.source == "nifti").all()
    assert store.query("SELECT count(*) AS n FROM unreadable").n[0] == 0  # sidecar not a file
    assert "SECRET" not in store.query("SELECT * FROM instances").to_string()


def test_dicomdir_is_recorded_and_its_files_indexed(
    tmp_path: Path,
    series_writer,  # noqa: ANN001
    indexer,  # noqa: ANN001
) -> None:
    paths = series_writer(tmp_path / "src", seed=4)
    fs = FileSet()
    for p in paths:
        fs.add(p)
    fs.write(tmp_path / "a")
    assert (tmp_path / "a" / "DICOMDIR").is_file()
    summary = indexer(tmp_path / "a", tmp_path / "db.duckdb")
    assert summary.unreadable == {"dicomdir": 1}
    store = Store(tmp_path / "db.duckdb")
    assert store.query("SELECT n_slices, selected FROM series").values.tolist() == [[30, True]]
