"""Tests of the synthetic DICOM writer: validity, geometry, pixel values, determinism."""

from __future__ import annotations

import dataclasses
import datetime
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from engine.errors import VfriskError
from engine.geometry import Grid
from engine.synth import dicom_writer
from engine.synth.dicom_base import (
    StudyInfo,
    WrittenSeries,
    hu_to_stored,
    make_uid,
    set_pixels,
    stored_range,
    stored_to_hu,
    write_instance,
)
from engine.synth.dicom_documents import write_dose_screen, write_text_sr
from engine.synth.dicom_writer import write_axial_series, write_coronal_reformat, write_localizer
from engine.synth.profiles import SiteProfile, load_profiles

PROFILES = load_profiles()
SITES = sorted(PROFILES)


def _study(tag: str = "a", *, contrast: bool = True) -> StudyInfo:
    return StudyInfo(
        patient_id=f"SYN{tag.upper()}01",
        patient_name="SYNTHETIC^JANE",
        birth_date=datetime.date(1941, 7, 15),
        sex="F",
        study_uid=make_uid("test-study", tag),
        study_date=datetime.date(2015, 3, 4),
        accession=f"ACC{tag.upper()}7",
        contrast=contrast,
        frame_of_reference_uid=make_uid("test-for", tag),
    )


def _grid(profile: SiteProfile, nz: int = 40, n: int = 48) -> Grid:
    # non-square pixels (dy != dx) so that a swapped PixelSpacing would show
    dy, dx = profile.pixel_spacing_mm
    return Grid((-0.5 * n * dx, -0.5 * n * dy, 512.25), (profile.slice_thickness_mm, dy, dx),
                (nz, n, n))  # fmt: skip


def _phantom(grid: Grid, seed: int = 0) -> np.ndarray:
    """Air around a water cylinder holding a bone rod, with noise: HU, shape grid.shape_zyx."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = grid.shape_zyx
    j, i = np.mgrid[0:ny, 0:nx]
    r2 = ((j - ny / 2) / ny) ** 2 + ((i - nx / 2) / nx) ** 2
    plane = np.where(r2 < 0.35**2, 0.0, -1000.0)
    plane[r2 < 0.08**2] = 700.0
    return (plane[None] + rng.normal(0.0, 12.0, (nz, ny, nx))).astype(np.float32)


def _write_all(root: Path, profile: SiteProfile, study: StudyInfo) -> dict[str, WrittenSeries]:
    """One study with every object kind, written to ``root``."""
    grid = _grid(profile, nz=32)
    hu = _phantom(grid)
    scout = np.clip(_phantom(grid, seed=1).sum(axis=1)[::-1] / 10, -1000, 3000)
    return {
        "axial": write_axial_series(
            root, study, profile, grid, hu, series_number=2, kernel=profile.kernel_soft,
            description="ABDOMEN", recon_circle=True,
        ),
        "localizer": write_localizer(
            root, study, profile, scout, (grid.spacing_zyx[0], grid.spacing_zyx[2]),
            z_top=grid.axis_z()[-1], x_left=grid.origin_xyz[0], series_number=1,
        ),
        "reformat": write_coronal_reformat(root, study, profile, grid, hu, series_number=3),
        "secondary_capture": write_dose_screen(root, study, profile, series_number=999),
        "sr": write_text_sr(root, study, profile, series_number=1000),
    }  # fmt: skip


def _read_sitk(series: WrittenSeries) -> sitk.Image:
    """The series read through SimpleITK's GDCM series reader."""
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(series.paths[0].parent), series.series_uid)
    assert len(names) == len(series.paths)
    reader.SetFileNames(names)
    return reader.Execute()


def _gdcm_stored(path: Path) -> np.ndarray:
    """Stored pixel values decoded by GDCM (independent of pydicom's decoders)."""
    gdcm = pytest.importorskip("gdcm")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read(), f"GDCM cannot read {path}"
    image = reader.GetImage()
    buf = image.GetBuffer()
    raw = buf.encode("utf-8", "surrogateescape") if isinstance(buf, str) else bytes(buf)
    dtype = {"INT16": "<i2", "UINT16": "<u2", "UINT8": "u1"}[
        image.GetPixelFormat().GetScalarTypeAsString()
    ]
    return np.frombuffer(raw, dtype=dtype).reshape(image.GetDimension(1), image.GetDimension(0))


# ------------------------------------------------------------------------------ validity


@pytest.mark.parametrize("site", SITES)
def test_every_object_reads_and_passes_dciodvfy(
    tmp_path: Path, site: str, dciodvfy_errors: Callable[[Path], list[str]]
) -> None:
    profile = PROFILES[site]
    written = _write_all(tmp_path, profile, _study(site))
    for kind, series in written.items():
        assert series.kind == kind
        for path in series.paths:
            assert path.is_absolute() and path.is_file()
            ds = pydicom.dcmread(path)
            if kind != "sr":
                assert ds.pixel_array.shape == (ds.Rows, ds.Columns)  # decodes (JPEG 2000 too)
            assert dciodvfy_errors(path) == [], f"{kind} {path}"
    axial = written["axial"]
    assert _read_sitk(axial).GetSize() == (48, 48, 32)
    first = pydicom.dcmread(axial.paths[0], stop_before_pixels=True)
    if profile.transfer_syntax == "JPEG2000Lossless":
        assert first.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"


def test_axial_attributes(tmp_path: Path) -> None:
    profile = PROFILES["dev"]
    grid = _grid(profile, nz=4)
    series = write_axial_series(
        tmp_path, _study(), profile, grid, _phantom(grid), series_number=5,
        kernel=profile.kernel_bone, description="BONE 2.5", recon_circle=False,
    )  # fmt: skip
    ds = pydicom.dcmread(series.paths[0])
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
        "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
        "ReferringPhysicianName", "StudyID", "SeriesInstanceUID", "SeriesNumber",
        "FrameOfReferenceUID", "PositionReferenceIndicator", "Manufacturer",
        "ManufacturerModelName", "InstitutionName", "StationName", "KVP",
        "AcquisitionNumber", "SliceLocation", "ContrastBolusAgent",
    ):  # fmt: skip
        assert keyword in ds, keyword
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert ds.Modality == "CT" and ds.PatientPosition == "HFS"
    assert ds.BodyPartExamined == "ABDOMEN" and ds.SpecificCharacterSet == "ISO_IR 100"
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx(list(grid.spacing_zyx[1:]))
    assert float(ds.SliceThickness) == profile.slice_thickness_mm
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 1)
    assert ds.RescaleType == "HU" and float(ds.RescaleSlope) == 1.0
    assert ds.ConvolutionKernel == profile.kernel_bone and float(ds.WindowWidth) >= 1500
    assert ds.PatientAge == "073Y" and ds.PixelPaddingValue == -2000
    no_contrast = write_axial_series(
        tmp_path / "b", _study("b", contrast=False), profile, grid, _phantom(grid),
        series_number=2, kernel=profile.kernel_soft, description="x", recon_circle=False,
    )  # fmt: skip
    assert "ContrastBolusAgent" not in pydicom.dcmread(no_contrast.paths[0])
    unsigned = pydicom.dcmread(
        write_axial_series(
            tmp_path / "c", _study("c"), PROFILES["ext_a"], grid, _phantom(grid),
            series_number=2, kernel="B30f", description="x", recon_circle=True,
        ).paths[0]
    )  # fmt: skip
    assert (unsigned.BitsStored, unsigned.HighBit, unsigned.PixelRepresentation) == (12, 11, 0)
    assert "PixelPaddingValue" not in unsigned


def test_other_objects_identify_themselves(tmp_path: Path) -> None:
    written = _write_all(tmp_path, PROFILES["ext_b"], _study())
    scout = pydicom.dcmread(written["localizer"].paths[0])
    assert list(scout.ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    assert [float(v) for v in scout.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
    reformat = [pydicom.dcmread(p) for p in written["reformat"].paths]
    assert len(reformat) == 5
    assert list(reformat[0].ImageType) == ["DERIVED", "SECONDARY", "REFORMATTED"]
    ys = [float(ds.ImagePositionPatient[1]) for ds in reformat]
    assert ys == sorted(ys) and len(set(ys)) == 5
    sc = pydicom.dcmread(written["secondary_capture"].paths[0])
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.Modality == "CT"
    assert sc.BitsAllocated == 8 and sc.pixel_array.max() == 255  # burned-in text
    sr = pydicom.dcmread(written["sr"].paths[0])
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11" and sr.Modality == "SR"
    assert "PixelData" not in sr and sr.ContentSequence[0].ContentSequence[0].TextValue
    uids = {s.series_uid for s in written.values()}
    assert len(uids) == 5  # one series per object kind


# ---------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("order", ["head_first", "feet_first"])
def test_bead_position_against_pydicom_and_simpleitk(tmp_path: Path, site: str, order: str) -> None:
    profile = dataclasses.replace(PROFILES[site], instance_order=order)
    grid = _grid(profile)
    hu = _phantom(grid)
    bead = (27, 14, 31)  # (k, j, i): off-centre in every axis
    hu[bead] = 2000.0
    hu[bead[0] - 1, bead[1], bead[2]] = hu[bead[0] + 1, bead[1], bead[2]] = 1200.0
    expected = np.array(grid.to_patient(bead))
    half_voxel = np.array(grid.spacing_zyx[::-1]) / 2  # (dx, dy, dz) / 2
    series = write_axial_series(
        tmp_path, _study(site), profile, grid, hu, series_number=2,
        kernel=profile.kernel_soft, description="x", recon_circle=True,
    )  # fmt: skip

    # pydicom + IPP/IOP/PixelSpacing math (PS3.3 C.7.6.2.1.1)
    slices = [pydicom.dcmread(p) for p in series.paths]
    z_by_instance = [float(ds.ImagePositionPatient[2]) for ds in slices]
    assert [ds.InstanceNumber for ds in slices] == list(range(1, len(slices) + 1))
    assert z_by_instance == sorted(z_by_instance, reverse=(order == "head_first"))
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    volume = np.stack([ds.pixel_array for ds in slices])
    k, r, c = np.unravel_index(np.argmax(volume), volume.shape)
    ds = slices[k]
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    found = (np.array([float(v) for v in ds.ImagePositionPatient])
             + c * col_spacing * iop[:3] + r * row_spacing * iop[3:])  # fmt: skip
    assert np.all(np.abs(found - expected) <= half_voxel)

    # SimpleITK (GDCM series reader): index (i, j, k) -> physical point
    image = _read_sitk(series)
    array = sitk.GetArrayFromImage(image)
    k, j, i = np.unravel_index(np.argmax(array), array.shape)
    found = np.array(image.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
    assert np.all(np.abs(found - expected) <= half_voxel)


# ---------------------------------------------------------------------------- HU values


@pytest.mark.parametrize("site", SITES)
def test_hu_round_trip(site: str) -> None:
    profile = PROFILES[site]
    lo, hi = stored_range(profile)
    hu_lo, hu_hi = lo + profile.rescale_intercept, hi + profile.rescale_intercept
    rng = np.random.default_rng(3)
    hu = rng.uniform(hu_lo - 500, hu_hi + 500, 10_000)
    stored = hu_to_stored(hu, profile)
    assert stored.dtype == (np.uint16 if profile.pixel_representation == 0 else np.int16)
    expected = np.clip(np.rint(hu), hu_lo, hu_hi)
    np.testing.assert_array_equal(stored_to_hu(stored, profile), expected)
    inside = (hu > hu_lo) & (hu < hu_hi)
    np.testing.assert_array_equal(stored_to_hu(stored, profile)[inside], np.rint(hu[inside]))
    if profile.pixel_padding_value is not None:
        assert not np.any(stored == profile.pixel_padding_value)


def _file_round_trip(tmp_path: Path, profile: SiteProfile) -> tuple[WrittenSeries, np.ndarray]:
    """Write a noisy volume spanning beyond the HU range; return series and expected HU."""
    grid = _grid(profile, nz=6)
    lo, hi = stored_range(profile)
    hu_lo, hu_hi = lo + profile.rescale_intercept, hi + profile.rescale_intercept
    rng = np.random.default_rng(4)
    hu = rng.uniform(max(hu_lo - 300, -5000), min(hu_hi + 300, 5000), grid.shape_zyx)
    series = write_axial_series(
        tmp_path, _study(), profile, grid, hu, series_number=2, kernel="K",
        description="x", recon_circle=False,
    )  # fmt: skip
    expected = np.clip(np.rint(hu), hu_lo, hu_hi)
    return series, expected


def _k_of(ds: pydicom.Dataset, grid_z0: float, dz: float) -> int:
    return round((float(ds.ImagePositionPatient[2]) - grid_z0) / dz)


@pytest.mark.parametrize("site", SITES)
def test_file_pixels_round_trip(tmp_path: Path, site: str) -> None:
    profile = PROFILES[site]
    series, expected = _file_round_trip(tmp_path, profile)
    grid = _grid(profile, nz=6)
    for path in series.paths:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        k = _k_of(ds, grid.origin_xyz[2], grid.spacing_zyx[0])
        np.testing.assert_array_equal(hu, expected[k])


@pytest.mark.parametrize("syntax", ["JPEG2000Lossless", "RLELossless"])
@pytest.mark.parametrize("representation", [0, 1])
def test_compressed_pixels_against_gdcm(tmp_path: Path, syntax: str, representation: int) -> None:
    # independent decoder: GDCM (python-gdcm); reference call: gdcm.ImageReader().GetImage()
    profile = dataclasses.replace(
        PROFILES["ext_b"], transfer_syntax=syntax, pixel_representation=representation,
        rescale_intercept=-1024.0, pixel_padding_value=None,
    )  # fmt: skip
    series, expected = _file_round_trip(tmp_path, profile)
    grid = _grid(profile, nz=6)
    for path in series.paths:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID.is_compressed
        stored = _gdcm_stored(path)
        np.testing.assert_array_equal(stored, ds.pixel_array)
        k = _k_of(ds, grid.origin_xyz[2], grid.spacing_zyx[0])
        np.testing.assert_array_equal(stored_to_hu(stored, profile), expected[k])


def test_rle_pixels_against_dcmdrle(
    tmp_path: Path, require_tool: Callable[[str], str], dciodvfy_errors: Callable[[Path], list[str]]
) -> None:
    # independent decoder: DCMTK; reference call: dcmdrle IN OUT (RLE -> explicit VR LE)
    exe = require_tool("dcmdrle")
    profile = dataclasses.replace(PROFILES["ext_b"], transfer_syntax="RLELossless")
    series, expected = _file_round_trip(tmp_path / "in", profile)
    grid = _grid(profile, nz=6)
    for n, path in enumerate(series.paths):
        assert dciodvfy_errors(path) == []
        out = tmp_path / f"decoded{n}.dcm"
        subprocess.run([exe, str(path), str(out)], check=True, capture_output=True)
        ds = pydicom.dcmread(out)
        assert not ds.file_meta.TransferSyntaxUID.is_compressed
        k = _k_of(ds, grid.origin_xyz[2], grid.spacing_zyx[0])
        np.testing.assert_array_equal(stored_to_hu(ds.pixel_array, profile), expected[k])


@pytest.mark.parametrize("site", ["dev", "ext_b"])
def test_padding_outside_recon_circle(tmp_path: Path, site: str) -> None:
    profile = PROFILES[site]
    grid = _grid(profile, nz=2)
    hu = _phantom(grid)
    series = write_axial_series(
        tmp_path, _study(), profile, grid, hu, series_number=2, kernel="K",
        description="x", recon_circle=True,
    )  # fmt: skip
    ds = pydicom.dcmread(series.paths[0])
    assert ds.PixelPaddingValue == profile.pixel_padding_value
    stored = ds.pixel_array
    _, ny, nx = grid.shape_zyx
    _, dy, dx = grid.spacing_zyx
    j, i = np.mgrid[0:ny, 0:nx]
    dist = np.hypot((j - (ny - 1) / 2) * dy, (i - (nx - 1) / 2) * dx)
    outside = dist > nx * dx / 2
    assert outside[0, 0] and not outside[ny // 2, nx // 2]
    assert np.all(stored[outside] == profile.pixel_padding_value)
    k = _k_of(ds, grid.origin_xyz[2], grid.spacing_zyx[0])
    np.testing.assert_array_equal(stored[~outside], hu_to_stored(hu[k], profile)[~outside])


# ------------------------------------------------------------------ determinism, layout


def test_same_inputs_give_identical_bytes(tmp_path: Path) -> None:
    for site in SITES:
        first = _write_all(tmp_path / "one" / site, PROFILES[site], _study(site))
        second = _write_all(tmp_path / "two" / site, PROFILES[site], _study(site))
        for kind in first:
            for a, b in zip(first[kind].paths, second[kind].paths, strict=True):
                assert a.relative_to(tmp_path / "one") == b.relative_to(tmp_path / "two")
                assert a.read_bytes() == b.read_bytes(), f"{site} {kind} {a.name}"


class _PydicomSliceWriter:
    """Reference for ``dicom_writer._SliceEncoder``: set the attributes, then dcmwrite."""

    def __init__(self, ds: pydicom.Dataset) -> None:
        self.ds = ds

    def write(self, path: Path, values: tuple, frame: np.ndarray) -> None:
        uid, self.ds.InstanceNumber, self.ds.ImagePositionPatient, self.ds.SliceLocation = values
        set_pixels(self.ds, frame, self.ds.file_meta.TransferSyntaxUID)
        write_instance(self.ds, path, uid)


@pytest.mark.parametrize("syntax", ["ExplicitVRLittleEndian", "ImplicitVRLittleEndian"])
@pytest.mark.parametrize("site", SITES)
def test_slice_encoder_against_pydicom_dcmwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site: str, syntax: str
) -> None:
    # the fast path must write the very bytes pydicom.dcmwrite writes (tolerance: none)
    profile = dataclasses.replace(PROFILES[site], transfer_syntax=syntax)
    grid = _grid(profile, nz=5)
    hu = _phantom(grid)
    kwargs = dict(series_number=2, kernel="K", description="x", recon_circle=True)
    fast = write_axial_series(tmp_path / "fast", _study(), profile, grid, hu, **kwargs)
    monkeypatch.setattr(dicom_writer, "_SliceEncoder", _PydicomSliceWriter)
    slow = write_axial_series(tmp_path / "slow", _study(), profile, grid, hu, **kwargs)
    for a, b in zip(fast.paths, slow.paths, strict=True):
        assert a.read_bytes() == b.read_bytes(), f"{site} {syntax} {a.name}"


def test_make_uid() -> None:
    uid = make_uid("study", 1)
    assert uid == make_uid("study", 1) != make_uid("study", 2)
    assert len(uid) <= 64 and re.fullmatch(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))+", uid)


def test_archive_layouts(tmp_path: Path) -> None:
    study = _study()
    written = {}
    for site in SITES:
        profile = PROFILES[site]
        grid = _grid(profile, nz=3)
        written[profile.layout] = write_axial_series(
            tmp_path / site, study, profile, grid, _phantom(grid), series_number=4,
            kernel="K", description="x", recon_circle=False,
        )  # fmt: skip
    pss = written["patient_study_series"].paths
    assert [p.name for p in pss] == ["IM0001", "IM0002", "IM0003"]
    assert len(pss[0].relative_to(tmp_path / "dev").parts) == 4
    assert pss[0].parts[-4] == study.patient_id
    dated = written["dated_accession"].paths[0].relative_to(tmp_path / "ext_a")
    assert dated.parts == ("2015", "03", study.accession, "4", "1.dcm")
    flat = written["flat_uid"].paths[0]
    assert flat.relative_to(tmp_path / "ext_b").parts[0] == study.patient_id
    assert flat.name == pydicom.dcmread(flat, stop_before_pixels=True).SOPInstanceUID + ".dcm"


def test_existing_target_is_refused(tmp_path: Path) -> None:
    profile = PROFILES["ext_a"]
    grid = _grid(profile, nz=5)
    hu = _phantom(grid)

    def write() -> WrittenSeries:
        return write_axial_series(
            tmp_path, _study(), profile, grid, hu, series_number=2, kernel="K",
            description="x", recon_circle=False,
        )  # fmt: skip

    series = write()
    with pytest.raises(VfriskError) as err:
        write()
    assert err.value.code == "output_exists" and str(series.paths[0]) in str(err.value)

    # one pre-existing file: refused before any file of the series is written
    for path in series.paths:
        path.unlink()
    series.paths[3].write_bytes(b"keep me")
    with pytest.raises(VfriskError, match="output_exists") as err:
        write()
    assert str(series.paths[3]) in str(err.value)
    assert series.paths[3].read_bytes() == b"keep me"
    assert not any(p.exists() for n, p in enumerate(series.paths) if n != 3)
