"""Pixel values in HU: every transfer syntax against independent decoders; padding to air.

References: GDCM (python-gdcm, ``gdcm.ImageReader``) and DCMTK (``dcmdjpeg``, ``dcmdjpls``,
``dcmdrle`` to uncompressed) on pydicom's own test files (pydicom-data) and on the
project's synthetic sites.
"""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from engine.geometry import Grid
from engine.load import AIR_HU, load_series
from engine.load.frames import decode_hu
from engine.synth.dicom_base import StudyInfo, hu_to_stored, make_uid
from engine.synth.dicom_writer import write_axial_series
from engine.synth.profiles import load_profiles

PROFILES = load_profiles()

# pydicom-data files: name -> what it exercises
TESTFILES = {
    "CT_small.dcm": "CT, explicit VR LE, signed, padding -2000 (GE)",
    "MR_small_bigendian.dcm": "explicit VR big endian",
    "693_J2KR.dcm": "CT, JPEG 2000 lossless, 512 x 512",
    "MR_small_jp2klossless.dcm": "MR, JPEG 2000 lossless",
    "JPEG-LL.dcm": "JPEG Lossless process 14 SV1, signed 16 bit",
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "JPEG Lossless, 8 bit",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless",
    "MR_small_RLE.dcm": "RLE lossless",
    "emri_small_jpeg_2k_lossless.dcm": "Enhanced MR, 10 frames, JPEG 2000",
    "emri_small_RLE.dcm": "Enhanced MR, 10 frames, RLE",
    "eCT_Supplemental.dcm": "Enhanced CT, 2 frames, rescale in shared functional groups",
}


def _testfile(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in pydicom-data (pip install pydicom-data)")
    return Path(path)


def _gdcm_stored(path: Path) -> np.ndarray:
    """Stored values decoded by GDCM, shape (frames, rows, cols)."""
    gdcm = pytest.importorskip("gdcm")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read(), f"GDCM cannot read {path}"
    image = reader.GetImage()
    buf = image.GetBuffer()
    raw = buf.encode("utf-8", "surrogateescape") if isinstance(buf, str) else bytes(buf)
    dtype = {"INT16": "=i2", "UINT16": "=u2", "UINT8": "u1", "INT8": "i1"}[
        image.GetPixelFormat().GetScalarTypeAsString()
    ]
    frames = image.GetDimension(2) if image.GetNumberOfDimensions() == 3 else 1
    return np.frombuffer(raw, dtype=dtype).reshape(
        frames, image.GetDimension(1), image.GetDimension(0)
    )


def _reference_hu(path: Path, stored: np.ndarray) -> np.ndarray:
    """Slope, intercept (classic or shared functional group), padding and air floor."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    source = ds
    if "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "PixelValueTransformationSequence" in shared:
            source = shared.PixelValueTransformationSequence[0]
    slope = float(source.get("RescaleSlope", 1.0))
    intercept = float(source.get("RescaleIntercept", 0.0))
    hu = stored.astype(np.float64) * slope + intercept
    if "PixelPaddingValue" in ds:
        hu[stored == ds.PixelPaddingValue] = AIR_HU
    return np.maximum(hu, AIR_HU)


@pytest.mark.parametrize("name", sorted(TESTFILES))
def test_pydicom_testfiles_against_gdcm(name: str) -> None:
    path = _testfile(name)
    hu = decode_hu(path)
    reference = _reference_hu(path, _gdcm_stored(path))
    assert hu.dtype == np.float32 and hu.shape == reference.shape, TESTFILES[name]
    np.testing.assert_array_equal(hu, reference.astype(np.float32))


@pytest.mark.parametrize(
    ("tool", "name"),
    [
        ("dcmdjpeg", "JPEG-LL.dcm"),
        ("dcmdjpeg", "JPGLosslessP14SV1_1s_1f_8b.dcm"),
        ("dcmdjpls", "MR_small_jpeg_ls_lossless.dcm"),
        ("dcmdjpls", "emri_small_jpeg_ls_lossless.dcm"),
        ("dcmdrle", "MR_small_RLE.dcm"),
        ("dcmdrle", "emri_small_RLE.dcm"),
    ],
)
def test_compressed_testfiles_against_dcmtk(
    tmp_path: Path, require_tool: Callable[[str], str], tool: str, name: str
) -> None:
    # reference call: DCMTK `TOOL IN OUT` writes explicit VR LE, read back uncompressed
    exe = require_tool(tool)
    path = _testfile(name)
    out = tmp_path / "decoded.dcm"
    subprocess.run([exe, str(path), str(out)], check=True, capture_output=True)
    assert not pydicom.dcmread(out).file_meta.TransferSyntaxUID.is_compressed
    np.testing.assert_array_equal(decode_hu(path), decode_hu(out))


def test_axial_testfiles_load_as_volumes() -> None:
    # the single-slice axial test files go through load_series too (geometry from IPP)
    for name in ("CT_small.dcm", "693_J2KR.dcm", "MR_small_jp2klossless.dcm"):
        path = _testfile(name)
        volume = load_series([path])
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert volume.hu.shape == (1, ds.Rows, ds.Columns)
        np.testing.assert_allclose(
            volume.grid.origin_xyz, [float(v) for v in ds.ImagePositionPatient]
        )
        np.testing.assert_array_equal(volume.hu[0], decode_hu(path)[0])


def _study() -> StudyInfo:
    return StudyInfo(
        patient_id="SYNLOAD01", patient_name="SYNTHETIC^LOAD",
        birth_date=datetime.date(1944, 2, 3), sex="M", study_uid=make_uid("load-test", 1),
        study_date=datetime.date(2016, 5, 6), accession="ACCLOAD1", contrast=False,
        frame_of_reference_uid=make_uid("load-test-for", 1),
    )  # fmt: skip


@pytest.mark.parametrize("site", sorted(PROFILES))
def test_synthetic_sites_against_simpleitk_and_gdcm(
    mk: SimpleNamespace, tmp_path: Path, site: str
) -> None:
    profile = PROFILES[site]
    dy, dx = profile.pixel_spacing_mm
    n = 48  # >= 32 so that JPEG 2000 (ext_b) is really used
    grid = Grid((-0.5 * n * dx, -0.5 * n * dy, 300.0), (profile.slice_thickness_mm, dy, dx),
                (10, n, n))  # fmt: skip
    hu = mk.phantom(grid, seed=12)
    series = write_axial_series(
        tmp_path, _study(), profile, grid, hu, series_number=2, kernel=profile.kernel_soft,
        description="x", recon_circle=True,
    )  # fmt: skip
    volume = load_series(series.paths)

    assert volume.source == series.series_uid
    assert volume.grid.shape_zyx == grid.shape_zyx
    np.testing.assert_allclose(volume.grid.origin_xyz, grid.origin_xyz, atol=1e-5)
    k, j, i = np.unravel_index(np.argmax(volume.hu), volume.hu.shape)
    assert (k, j, i) == mk.bead_index(grid)
    # expected: what the writer stores, back in HU, padding outside the circle -> air
    stored = hu_to_stored(hu, profile).astype(np.float32) + profile.rescale_intercept
    y = (np.arange(n) - (n - 1) / 2) * dy
    x = (np.arange(n) - (n - 1) / 2) * dx
    outside = (y[:, None] ** 2 + x[None, :] ** 2) > (n * dx / 2) ** 2
    expected = np.maximum(np.where(outside[None], AIR_HU, stored), AIR_HU)
    np.testing.assert_array_equal(volume.hu, expected)
    assert np.all(volume.hu[:, outside] == AIR_HU)

    # SimpleITK's series reader (GDCM) knows nothing of padding: floor it the same way
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series.paths[0].parent)))
    reference = np.maximum(sitk.GetArrayFromImage(reader.Execute()).astype(np.float32), AIR_HU)
    np.testing.assert_array_equal(volume.hu, reference)

    if profile.transfer_syntax == "JPEG2000Lossless":
        first = series.paths[0]
        assert pydicom.dcmread(first).file_meta.TransferSyntaxUID.is_compressed
        np.testing.assert_array_equal(decode_hu(first), _reference_hu(first, _gdcm_stored(first)))


@pytest.mark.parametrize(
    ("intercept", "padding", "vr", "limit"),
    [
        (-1024.0, -2000, "SS", None),  # GE: -2000 stored, -3024 HU
        (-1024.0, 63536, "US", None),  # GE padding written as US: the bit pattern of -2000
        (0.0, -3024, "SS", None),  # Canon: -3024 stored and HU
        (-1024.0, -2000, "SS", -1990),  # a padding range (PixelPaddingRangeLimit)
        (-1024.0, 30000, "SS", None),  # padding above tissue must still be air, not bone
    ],
)
def test_padding_becomes_air(
    mk: SimpleNamespace, tmp_path: Path, intercept: float, padding: int, vr: str,
    limit: int | None,
) -> None:  # fmt: skip
    rng = np.random.default_rng(13)
    stored = rng.integers(-50, 1500, (16, 16)).astype(np.int16)  # tissue: HU >= -1074
    pad = padding - 65536 if padding > 32767 and vr == "US" else padding
    stored[:3] = pad
    if limit is not None:
        stored[3, :] = np.linspace(pad, limit, 16).astype(np.int16)
    ds = mk.ct_template(16, 16, (0.7, 0.7), (1, 0, 0, 0, 1, 0), "1.2.826.0.1.3680043.8.498.1")
    ds.RescaleIntercept = f"{intercept:g}"
    ds.add_new(0x00280120, vr, padding)
    if limit is not None:
        ds.add_new(0x00280121, vr, limit)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.PixelData = stored.tobytes()
    path = tmp_path / "padded.dcm"
    ds.save_as(path, enforce_file_format=True)

    hu = load_series([path]).hu[0]
    padded = stored == pad
    if limit is not None:
        padded |= (stored >= min(pad, limit)) & (stored <= max(pad, limit))
    assert np.all(hu[padded] == AIR_HU)
    tissue = np.maximum(stored.astype(np.float32) + intercept, AIR_HU)
    np.testing.assert_array_equal(hu[~padded], tissue[~padded])


def test_unsigned_12_bit_with_slope(mk: SimpleNamespace, tmp_path: Path) -> None:
    # any RescaleSlope/Intercept: HU = stored * 0.5 - 1000, unsigned 12-bit storage
    rng = np.random.default_rng(14)
    stored = rng.integers(0, 4096, (12, 14)).astype(np.uint16)
    ds = mk.ct_template(12, 14, (0.7, 0.8), (1, 0, 0, 0, 1, 0), "1.2.826.0.1.3680043.8.498.3")
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1000"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.4"
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.PixelData = stored.tobytes()
    path = tmp_path / "u12.dcm"
    ds.save_as(path, enforce_file_format=True)
    expected = np.maximum(stored.astype(np.float64) * 0.5 - 1000.0, AIR_HU)
    np.testing.assert_array_equal(load_series([path]).hu[0], expected.astype(np.float32))
