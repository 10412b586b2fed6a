"""Fixtures for the indexer tests: a generated cohort and hand-built DICOM series.

Helpers are handed to tests as fixtures (``series_writer``, ``enhanced_writer``,
``indexer``): test modules cannot import a conftest by name.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from engine.index import IndexRequest, Rules, index_archive
from engine.store import Store

COHORT_SEED = 2  # 5 patients, seed 2: soft + bone recons, a coronal reformat, dose screens


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 5-patient, 3-site low-resolution cohort (read-only: copy to modify)."""
    from engine.synth.cohort import SynthRequest, synthesize

    out = tmp_path_factory.mktemp("cohort") / "c"
    synthesize(
        SynthRequest(out, patients=5, sites="dev,ext_a,ext_b", seed=COHORT_SEED, resolution="low")
    )
    return out


@pytest.fixture(scope="session")
def cohort_db(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The cohort indexed once with the default rules."""
    store = Store(tmp_path_factory.mktemp("cohort_db") / "index.duckdb")
    index_archive(store, IndexRequest(cohort / "archive", workers=2, progress=False), Rules())
    return store


@pytest.fixture
def archive_copy(cohort: Path, tmp_path: Path) -> Path:
    """A private copy of the cohort's archive that a test may change."""
    dest = tmp_path / "archive"
    shutil.copytree(cohort / "archive", dest)
    return dest


def run_index(archive: Path, db: Path, rules: Rules | None = None, **kw: object):  # noqa: ANN201
    """Index ``archive`` into ``db`` in-process (no progress bar)."""
    req = IndexRequest(archive, progress=False, **kw)  # type: ignore[arg-type]
    return index_archive(Store(db), req, rules or Rules())


def _meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _base(sop_class: str, study_uid: str, series_uid: str, **kw: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = str(kw.get("patient_id", "HAND01"))
    ds.PatientName = "SECRET^NAME"  # must never reach the database
    ds.PatientBirthDate = "19450101"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20200102", "120000", "1"
    ds.Modality = str(kw.get("modality", "CT"))
    ds.Manufacturer = "SIEMENS"
    ds.InstitutionName = "Hand Hospital"
    ds.SeriesNumber = int(kw.get("series_number", 2))  # type: ignore[arg-type]
    ds.SeriesDescription = str(kw.get("description", "hand series"))
    return ds


def _pixels(ds: Dataset, rows: int, cols: int, frames: int, rng: np.random.Generator) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = rng.integers(-100, 100, (frames, rows, cols), dtype=np.int16).tobytes()


def write_series(
    folder: Path,
    *,
    n: int = 30,
    spacing: float = 5.0,
    thickness: float = 2.5,
    size: tuple[int, int] = (16, 16),
    kernel: str = "B30f",
    modality: str = "CT",
    image_type: str = "ORIGINAL\\PRIMARY\\AXIAL",
    series_number: int = 2,
    study_uid: str | None = None,
    series_uid: str | None = None,
    skip: tuple[int, ...] = (),
    sizes: dict[int, tuple[int, int]] | None = None,
    patient_id: str = "HAND01",
    seed: int = 0,
) -> list[Path]:
    """Write a small axial CT (or ``modality``) series, one file per slice; return paths.

    Slice ``k`` sits at z = -k * spacing (mm); indices in ``skip`` are not written (a gap);
    ``sizes`` gives some slices another (rows, cols).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid(entropy_srcs=[patient_id, "study"])
    series_uid = series_uid or generate_uid()
    sop_class = MRImageStorage if modality == "MR" else CTImageStorage
    paths = []
    for k in range(n):
        if k in skip:
            continue
        ds = _base(sop_class, study_uid, series_uid, modality=modality,
                   series_number=series_number, patient_id=patient_id)  # fmt: skip
        ds.ImageType = image_type.split("\\")
        ds.ConvolutionKernel = kernel
        ds.SliceThickness = thickness
        ds.PixelSpacing = [0.8, 0.8]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-6.0, -6.0, -k * spacing]
        ds.InstanceNumber = k + 1
        rows, cols = (sizes or {}).get(k, size)
        _pixels(ds, rows, cols, 1, rng)
        ds.file_meta = _meta(sop_class, ds.SOPInstanceUID)
        path = folder / f"slice{k:03d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced_ct(path: Path, *, frames: int = 30, spacing: float = 5.0, seed: int = 0) -> Path:
    """Write one Enhanced CT multi-frame file (functional groups geometry)."""
    rng = np.random.default_rng(seed)
    ds = _base(EnhancedCTImageStorage, generate_uid(), generate_uid(), patient_id="ENH01")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = frames
    shared = Dataset()
    orient, measures, recon = Dataset(), Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.SliceThickness = 2.0
    measures.PixelSpacing = [0.7, 0.7]
    recon.ConvolutionKernel = "Br40"
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.CTReconstructionSequence = Sequence([recon])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for k in range(frames):
        item, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, -k * spacing]
        item.PlanePositionSequence = Sequence([pos])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    _pixels(ds, 16, 16, frames, rng)
    ds.file_meta = _meta(EnhancedCTImageStorage, ds.SOPInstanceUID)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.fixture
def series_writer() -> Callable[..., list[Path]]:
    return write_series


@pytest.fixture
def enhanced_writer() -> Callable[..., Path]:
    return write_enhanced_ct


@pytest.fixture
def indexer() -> Callable[..., object]:
    return run_index
