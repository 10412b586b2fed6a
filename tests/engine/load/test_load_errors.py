"""Bad input: each refusal carries its reason code and names the file or series."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames

from engine.config import DEFAULT_CONFIG_PATH
from engine.errors import REASONS, VfriskError
from engine.load import load_series, load_volume
from engine.load.dicom import (
    DEFAULT_MAX_GAP_FACTOR,
    DEFAULT_MAX_PLANE_ANGLE_DEG,
    DEFAULT_SPACING_TOLERANCE,
)

AXIAL = (1, 0, 0, 0, 1, 0)


def _code(paths: object, **options: float) -> VfriskError:
    with pytest.raises(VfriskError) as err:
        load_volume(paths, **options)  # type: ignore[arg-type]
    assert err.value.code in REASONS
    return err.value


def _series(mk: SimpleNamespace, folder: Path, **kwargs: object) -> list[Path]:
    grid = mk.small_grid(nz=8, ny=10, nx=12)
    hu = mk.phantom(grid, seed=20)
    frames, ipps, spacing = mk.frames_for_iop(hu, grid, AXIAL)
    return mk.write_classic(folder, frames, ipps, spacing, AXIAL, **kwargs)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    err = _code([path])
    assert err.code == "empty_file" and str(path) in err.message


def test_random_bytes_with_dcm_suffix(tmp_path: Path) -> None:
    path = tmp_path / "noise.dcm"
    path.write_bytes(np.random.default_rng(21).bytes(4096))
    err = _code(path)
    assert err.code == "not_dicom" and str(path) in err.message


@pytest.mark.parametrize("where", ["header", "pixels"])
def test_truncated_file(mk: SimpleNamespace, tmp_path: Path, where: str) -> None:
    path = _series(mk, tmp_path / "s")[0]
    data = path.read_bytes()
    # header: inside the value of ImagePositionPatient (0020,0032); pixels: near the end
    ipp_value = data.index(b"\x20\x00\x32\x00DS") + 8
    cut = ipp_value + 3 if where == "header" else len(data) - 50
    path.write_bytes(data[:cut])
    err = _code([path])
    assert err.code == "truncated" and str(path) in err.message


def test_dicom_without_pixel_module(tmp_path: Path) -> None:
    sr = get_testdata_file("test-SR.dcm") or get_testdata_file("rtplan.dcm")
    err = _code([Path(sr)])
    assert err.code == "no_pixel_data" and str(sr) in err.message


def test_unsupported_transfer_syntax_names_file(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: no decoder
    path = tmp_path / "mpeg.dcm"
    ds.save_as(path)
    err = _code([path])
    assert err.code == "unsupported_transfer_syntax" and str(path) in err.message


def test_corrupt_codestream_is_decode_failed(tmp_path: Path) -> None:
    # a damaged JPEG 2000 header (no SOC marker); random bytes inside the codestream can
    # crash openjpeg itself, which no Python code can catch
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([b"\x00\x00\x00\x00" + frame[4:]])
    path = tmp_path / "corrupt.dcm"
    ds.save_as(path)
    assert _code([path]).code == "decode_failed"


def test_missing_geometry_is_bad_header(mk: SimpleNamespace, tmp_path: Path) -> None:
    path = _series(mk, tmp_path / "s")[0]
    ds = pydicom.dcmread(path)
    del ds.ImagePositionPatient
    ds.save_as(path)
    err = _code([path])
    assert err.code == "bad_header" and "ImagePositionPatient" in err.message


def test_slices_disagreeing_in_size(mk: SimpleNamespace, tmp_path: Path) -> None:
    paths = _series(mk, tmp_path / "s")
    ds = pydicom.dcmread(paths[2])
    ds.Rows, ds.Columns = 5, 24
    ds.save_as(paths[2])
    err = _code(paths)
    assert err.code == "mixed_sizes" and ds.SeriesInstanceUID in err.message

    paths = _series(mk, tmp_path / "t")
    ds = pydicom.dcmread(paths[1])
    ds.PixelSpacing = ["0.9", "0.9"]
    ds.save_as(paths[1])
    assert _code(paths).code == "mixed_sizes"


def test_two_series_are_refused(mk: SimpleNamespace, tmp_path: Path) -> None:
    paths = _series(mk, tmp_path / "a") + _series(mk, tmp_path / "b")
    assert _code(paths).code == "mixed_series"


def test_large_gap(mk: SimpleNamespace, tmp_path: Path) -> None:
    paths = _series(mk, tmp_path / "s", skip=[3, 4])  # two missing slices: a 3x gap
    err = _code(paths)
    assert err.code == "slice_gap" and "7.50 mm gap" in err.message
    assert pydicom.dcmread(paths[0]).SeriesInstanceUID in err.message
    # a larger configured factor fills it
    volume = load_series(paths, max_gap_factor=3.5)
    assert volume.hu.shape[0] == 8 and "interpolated 2 missing slices" in volume.warnings[0]


def test_coronal_series(mk: SimpleNamespace, tmp_path: Path) -> None:
    grid = mk.small_grid(nz=8, ny=10, nx=12)
    hu = mk.phantom(grid, seed=23)
    coronal = (1, 0, 0, 0, 0, -1)
    frames = [hu[::-1, j, :] for j in range(grid.shape_zyx[1])]
    ipps = [grid.to_patient((grid.shape_zyx[0] - 1, j, 0)) for j in range(grid.shape_zyx[1])]
    paths = mk.write_classic(tmp_path / "c", frames, ipps, (2.5, 0.8), coronal)
    err = _code(paths)
    assert err.code == "not_axial" and "90 degrees" in err.message


@pytest.mark.parametrize("content", [b"", b"not a nifti file at all" * 20])
def test_bad_nifti(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(content)
    err = _code(path)
    assert err.code == "bad_nifti" and str(path) in err.message


def test_defaults_match_the_config() -> None:
    loading = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())["loading"]
    assert loading == {
        "max_gap_factor": DEFAULT_MAX_GAP_FACTOR,
        "spacing_tolerance": DEFAULT_SPACING_TOLERANCE,
        "max_plane_angle_deg": DEFAULT_MAX_PLANE_ANGLE_DEG,
    }
