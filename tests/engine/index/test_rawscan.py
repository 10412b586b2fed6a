"""The fast header path gives exactly what the pydicom path gives, or steps aside."""

from __future__ import annotations

import io
from pathlib import Path
from unittest import mock

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from engine.dicom_raw import scan_header
from engine.index import headers
from engine.index.walk import discover


def _read_all(root: Path, fast: bool) -> list:
    entries = discover(root)
    if fast:
        return headers.read_chunk((entries, str(root)))
    with mock.patch.object(headers, "scan_header", lambda *a, **k: None):
        return headers.read_chunk((entries, str(root)))


def _taken(path: Path) -> bool:
    data = path.read_bytes()
    return scan_header(io.BytesIO(data), len(data), headers._TEXT_TAGS) is not None


def test_fast_path_against_pydicom_on_cohort(cohort: Path) -> None:
    # reference: the same files read with pydicom.dcmread(stop_before_pixels=True) only
    root = cohort / "archive"
    fast = _read_all(root, fast=True)
    assert fast == _read_all(root, fast=False)
    files = [Path(e.path) for e in discover(root)]
    # implicit and explicit VR, JPEG 2000, structured reports (sequences, no pixels)
    assert sum(_taken(p) for p in files) == len(files)


def test_fast_path_against_pydicom_on_bad_and_odd_files(
    tmp_path: Path,
    series_writer,  # noqa: ANN001
    enhanced_writer,  # noqa: ANN001
) -> None:
    rng = np.random.default_rng(3)
    root = tmp_path / "a"
    good = series_writer(root / "good", n=4, seed=1)
    data = good[0].read_bytes()
    odd = root / "odd"
    odd.mkdir()
    for cut in (100, 140, 300, 600, len(data) - 200, len(data) - 1):
        (odd / f"cut_{cut}").write_bytes(data[:cut])
    # a cut inside an element's value (byte 600 may fall between two elements: the UIDs'
    # lengths are random, and a header cut there reads as complete up to its end)
    uid = pydicom.dcmread(good[0]).SeriesInstanceUID.encode()
    (odd / "cut_in_uid").write_bytes(data[: data.index(uid) + len(uid) // 2])
    (odd / "random").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (odd / "empty").write_bytes(b"")
    ds = pydicom.dcmread(good[1])
    del ds.PixelData
    ds.save_as(odd / "no_pixels", enforce_file_format=True)
    ds = pydicom.dcmread(good[2])
    ds.PatientID = "Müller"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.save_as(odd / "latin1", enforce_file_format=True)
    ds = pydicom.dcmread(good[3])
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(odd / "implicit", enforce_file_format=True)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    del ds.SeriesInstanceUID
    ds.save_as(odd / "no_series_uid", enforce_file_format=True)
    enhanced_writer(odd / "enhanced.dcm", frames=12)
    fast = _read_all(root, fast=True)
    assert fast == _read_all(root, fast=False)
    codes = {Path(r.path).name: getattr(r, "reason_code", None) for r in fast}
    # where byte 600 falls depends on the random UIDs' lengths; a cut in the pixels does not
    assert codes[f"cut_{len(data) - 200}"] == "truncated" and codes["random"] == "not_dicom"
    assert codes["cut_600"] in {"truncated", "bad_header"}
    assert codes["cut_in_uid"] == "truncated"
    assert codes["no_pixels"] == "no_pixel_data" and codes["no_series_uid"] == "bad_header"
    assert codes["implicit"] is None and codes["latin1"] is None
    # steps aside for what needs pydicom: cut files, non-ASCII text, functional groups
    assert not _taken(odd / "cut_in_uid") and not _taken(odd / "latin1")
    assert not _taken(odd / "enhanced.dcm") and not _taken(odd / "random")
    assert _taken(odd / "implicit") and _taken(odd / "no_pixels")
