"""The loader's raw fast path gives exactly what the pydicom path gives, or steps aside.

Reference: the same files loaded with the fast path switched off
(``engine.load.dicom.read_plain_frame`` patched to return ``None``), i.e. every header
through ``pydicom.dcmread`` and ``engine.load.frames.read_frames``. Volumes, grids and
warnings must be bit-identical, errors identical in code and message.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, RLELossless

from engine.archive_paths import ZIP_SEPARATOR
from engine.dicom_raw import scan_header
from engine.errors import VfriskError
from engine.geometry import Grid
from engine.load import dicom, load_series
from engine.load.frames import read_frames
from engine.load.plain import read_plain_frame
from engine.synth.dicom_base import StudyInfo, make_uid
from engine.synth.dicom_writer import write_axial_series
from engine.synth.profiles import load_profiles

PROFILES = load_profiles()
AXIAL = (1, 0, 0, 0, 1, 0)


def _load(paths: list[Path], fast: bool, **options: float) -> object:
    """The volume, or the (code, message) of the refusal; the fast path on or off."""
    try:
        if fast:
            return load_series(paths, **options)
        with mock.patch.object(dicom, "read_plain_frame", lambda path: None):
            return load_series(paths, **options)
    except VfriskError as err:
        return (err.code, err.message)


def _assert_same(paths: list[Path], **options: float) -> object:
    fast, slow = _load(paths, True, **options), _load(paths, False, **options)
    if isinstance(slow, tuple):
        assert fast == slow
        return slow
    assert fast.hu.dtype == slow.hu.dtype == np.float32
    np.testing.assert_array_equal(fast.hu, slow.hu)  # bit-identical, NaN-free
    assert fast.hu.tobytes() == slow.hu.tobytes()
    assert (fast.grid, fast.warnings, fast.source) == (slow.grid, slow.warnings, slow.source)
    return slow


def _taken(path: Path) -> bool:
    return read_plain_frame(str(path)) is not None


def _series(mk: SimpleNamespace, folder: Path, **kwargs: object) -> list[Path]:
    grid = mk.small_grid(nz=8, ny=10, nx=12)
    hu = mk.phantom(grid, seed=30)
    frames, ipps, spacing = mk.frames_for_iop(hu, grid, AXIAL)
    return mk.write_classic(folder, frames, ipps, spacing, AXIAL, **kwargs)


def _study() -> StudyInfo:
    return StudyInfo(
        patient_id="SYNFAST01", patient_name="SYNTHETIC^FAST",
        birth_date=datetime.date(1950, 1, 2), sex="F", study_uid=make_uid("fast-test", 1),
        study_date=datetime.date(2018, 3, 4), accession="ACCFAST1", contrast=False,
        frame_of_reference_uid=make_uid("fast-test-for", 1),
    )  # fmt: skip


@pytest.mark.parametrize("site", sorted(PROFILES))
@pytest.mark.parametrize("syntax", ["own", "ExplicitVRLittleEndian"])
def test_fast_path_against_pydicom_on_synthetic_sites(
    mk: SimpleNamespace, tmp_path: Path, site: str, syntax: str
) -> None:
    profile = PROFILES[site]
    if syntax != "own":
        profile = dataclasses.replace(profile, transfer_syntax=syntax)
    dy, dx = profile.pixel_spacing_mm
    n = 48  # >= 32 so that JPEG 2000 is really used
    grid = Grid((-0.5 * n * dx, -0.5 * n * dy, 300.0), (profile.slice_thickness_mm, dy, dx),
                (9, n, n))  # fmt: skip
    series = write_axial_series(
        tmp_path, _study(), profile, grid, mk.phantom(grid, seed=31), series_number=2,
        kernel=profile.kernel_soft, description="x", recon_circle=True,
    )  # fmt: skip
    _assert_same(series.paths)
    # a missing slice: interpolated, with the same warning on both paths
    volume = _assert_same(series.paths[:4] + series.paths[5:])
    assert len(volume.warnings) == 1 and "interpolated 1 missing slice" in volume.warnings[0]
    compressed = profile.transfer_syntax in ("JPEG2000Lossless", "RLELossless")
    assert all(_taken(p) != compressed for p in series.paths)


def test_fast_path_against_pydicom_with_warnings_and_odd_pixels(
    mk: SimpleNamespace, tmp_path: Path
) -> None:
    # gantry tilt (resampling warning), uneven spacing, duplicates, shuffled files
    tilted = mk.tilted_series(tmp_path / "tilt", (1.0, -2.0, -5.0), 12.0, seed=32)
    assert "gantry tilt" in _assert_same(tilted).warnings[0]
    uneven = _series(mk, tmp_path / "uneven")
    ds = pydicom.dcmread(uneven[3])
    ds.ImagePositionPatient[2] = f"{float(ds.ImagePositionPatient[2]) + 0.9:.6f}"
    ds.save_as(uneven[3])
    assert "uneven" in _assert_same(uneven).warnings[0]
    plain = _series(mk, tmp_path / "plain", order="reversed")
    _assert_same(plain + plain[:3])
    # unsigned 12-bit with a slope; signed 12-bit that needs sign extension; padding
    rng = np.random.default_rng(33)
    variants = {
        "u12": dict(BitsStored=12, HighBit=11, PixelRepresentation=0, RescaleSlope="0.5"),
        "s12": dict(BitsStored=12, HighBit=11, PixelRepresentation=1),
        "pad": dict(PixelPaddingValue=-2000),  # GE: SS, below air after rescale
        "pad_us": dict(PixelPaddingValue=63536),  # the same bit pattern written as US
        "pad_range": dict(PixelPaddingValue=30000, PixelPaddingRangeLimit=30010),
    }
    for name, attrs in variants.items():
        paths = _series(mk, tmp_path / name)
        for k, path in enumerate(paths):
            ds = pydicom.dcmread(path)
            for keyword, value in attrs.items():
                if keyword.startswith("PixelPadding"):
                    ds.add_new(keyword, "US" if value > 32767 else "SS", value)
                else:
                    setattr(ds, keyword, value)
            stored = rng.integers(0, 4096, (ds.Rows, ds.Columns)).astype(np.uint16)
            if name == "s12":
                stored[stored >= 2048] |= 0xF000  # 12-bit two's complement, sign bits set
                stored[0, 0] = 0x0800  # -2048 in 12 bits with the high bits clear
            if name.startswith("pad"):
                stored[:2] = (attrs["PixelPaddingValue"] + k % 3) & 0xFFFF
            ds.PixelData = stored.tobytes()
            ds.save_as(path)
        assert all(_taken(p) for p in paths), name
        _assert_same(paths)


def _testfiles() -> list[Path]:
    """Every file of pydicom's own test files and of pydicom-data, where installed.

    Globbed, not ``get_testdata_files('*')``, which tries (slow) downloads when offline.
    """
    roots = {Path(p).parent for p in map(get_testdata_file, ("CT_small.dcm", "693_UNCI.dcm")) if p}
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


def test_fast_frames_against_read_frames_on_pydicom_testfiles() -> None:
    # every test file: the fast frame equals read_frames' frame (pydicom), or is None
    taken = []
    files = _testfiles()
    for path in files:
        fast = read_plain_frame(str(path))
        if fast is None:
            continue
        slow = read_frames(path)
        assert len(slow) == 1, path
        fields = [f.name for f in dataclasses.fields(fast) if f.name != "data"]
        assert [getattr(fast, f) for f in fields] == [getattr(slow[0], f) for f in fields]
        assert fast.pixels.dtype == slow[0].pixels.dtype, path
        np.testing.assert_array_equal(fast.pixels, slow[0].pixels)
        taken.append(path.name)
    assert "MR_small_implicit.dcm" in taken
    assert "693_UNCI.dcm" in taken or not any(p.name == "693_UNCI.dcm" for p in files)
    # big endian, JPEG 2000, Enhanced CT; CT_small.dcm has elements after its pixel data
    skipped = {"MR_small_bigendian.dcm", "693_J2KR.dcm", "eCT_Supplemental.dcm", "CT_small.dcm"}
    assert not skipped & set(taken)


def test_scan_header_locates_pixel_data_against_pydicom() -> None:
    # reference: pydicom.dcmread(path).PixelData, the bytes of the pixel data value
    path = get_testdata_file("CT_small.dcm")
    data = Path(path).read_bytes()
    raw = scan_header(io.BytesIO(data), len(data), ())
    assert raw is not None and raw.pixel_tag == 0x7FE00010
    end = raw.pixel_start + raw.pixel_length
    assert data[raw.pixel_start : end] == pydicom.dcmread(path).PixelData


def _rewrite(path: Path, edit: Callable[[pydicom.Dataset], None], **save: object) -> Path:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path, **save)
    return path


def _set(**attrs: object) -> Callable[[pydicom.Dataset], None]:
    def edit(ds: pydicom.Dataset) -> None:
        for keyword, value in attrs.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)

    return edit


def _new(tag: int, vr: str, value: object) -> Callable[[pydicom.Dataset], None]:
    def edit(ds: pydicom.Dataset) -> None:
        if tag in ds:
            del ds[tag]
        ds.add_new(tag, vr, value)

    return edit


def _implicit(ds: pydicom.Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian


def _rle(ds: pydicom.Dataset) -> None:
    ds.compress(RLELossless, encoding_plugin="pydicom")


def _trailing_element(ds: pydicom.Dataset) -> None:
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 8)  # Data Set Trailing Padding after the pixels


# name -> (edit of the first file of a series, fast path taken, error code or None)
_VARIANTS: dict[str, tuple[Callable[[pydicom.Dataset], None], bool, str | None]] = {
    "implicit": (_implicit, True, None),
    "no_thickness": (_set(SliceThickness=None), True, None),
    "empty_slope": (_set(RescaleSlope=""), True, None),
    "no_sop_uid": (_set(SOPInstanceUID=None), True, None),
    "rle": (_rle, False, None),
    "trailing_element": (_trailing_element, False, None),
    "two_frames": (_set(NumberOfFrames=2), False, "truncated"),
    "bits_8": (_set(BitsAllocated=8), False, "decode_failed"),
    "rgb": (_set(SamplesPerPixel=3), False, "bad_header"),
    "no_ipp": (_set(ImagePositionPatient=None), False, "bad_header"),
    "two_spacings": (_new(0x00280030, "DS", ["0.7", "0.8", "0.9"]), False, "bad_header"),
    "slope_as_lo": (_new(0x00281053, "LO", "1"), False, None),
    "rows_as_ss": (_new(0x00280010, "SS", 10), False, None),
    "two_series_uids": (_set(SeriesInstanceUID=["1.2.3", "1.2.4"]), False, "mixed_series"),
    "unsigned_padding_ss": (
        lambda ds: (_set(PixelRepresentation=0)(ds), _new(0x00280120, "SS", -2000)(ds)),
        False,
        None,
    ),
}


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_fallback_where_it_should_with_identical_results(
    mk: SimpleNamespace, tmp_path: Path, variant: str
) -> None:
    edit, taken, code = _VARIANTS[variant]
    paths = _series(mk, tmp_path / "s")
    _rewrite(paths[0], edit)
    assert _taken(paths[0]) == taken
    assert all(_taken(p) for p in paths[1:])
    result = _assert_same(paths)
    assert (result[0] if isinstance(result, tuple) else None) == code, result


def test_big_endian_and_malformed_values_fall_back(mk: SimpleNamespace, tmp_path: Path) -> None:
    paths = _series(mk, tmp_path / "big")
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = np.frombuffer(ds.PixelData, "<i2").astype(">i2").tobytes()
    pydicom.dcmwrite(paths[0], ds, little_endian=False, implicit_vr=False)
    assert not _taken(paths[0]) and all(_taken(p) for p in paths[1:])
    assert not isinstance(_assert_same(paths), tuple)
    # a non-numeric ImagePositionPatient, written byte by byte (pydicom refuses to)
    paths = _series(mk, tmp_path / "bad_ipp")
    data = paths[0].read_bytes()
    at = data.index(b"\x20\x00\x32\x00DS") + 8
    paths[0].write_bytes(data[:at] + b"x" + data[at + 1 :])
    assert not _taken(paths[0])
    code, message = _assert_same(paths)
    assert code == "bad_header" and "ImagePositionPatient" in message


@pytest.mark.parametrize("where", ["header", "pixels", "empty"])
def test_cut_files_fall_back_with_identical_errors(
    mk: SimpleNamespace, tmp_path: Path, where: str
) -> None:
    paths = _series(mk, tmp_path / "s")
    data = paths[0].read_bytes()
    ipp_value = data.index(b"\x20\x00\x32\x00DS") + 8  # cut inside ImagePositionPatient
    cut = {"header": ipp_value + 3, "pixels": len(data) - 2, "empty": 0}[where]
    paths[0].write_bytes(data[:cut])
    assert not _taken(paths[0])
    code, message = _assert_same(paths)
    assert code == ("empty_file" if where == "empty" else "truncated")
    assert str(paths[0]) in message


def test_zip_members_fall_back(mk: SimpleNamespace, tmp_path: Path) -> None:
    paths = _series(mk, tmp_path / "s")
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in paths:
            zf.write(path, path.name)
    members = [Path(f"{archive}{ZIP_SEPARATOR}{p.name}") for p in paths]
    assert not any(_taken(m) for m in members)
    np.testing.assert_array_equal(load_series(members).hu, load_series(paths).hu)
