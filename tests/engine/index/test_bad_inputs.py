"""Each bad input gets its own reason code; the run goes on and counts them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom

from engine.errors import REASONS
from engine.store import Store


def _bad_archive(root: Path, series_writer) -> dict[str, Path]:  # noqa: ANN001
    rng = np.random.default_rng(7)
    good = series_writer(root / "good", seed=1)
    bad = {}
    bad["empty_file"] = root / "junk" / "empty.dcm"
    bad["empty_file"].parent.mkdir(parents=True)
    bad["empty_file"].write_bytes(b"")
    data = good[0].read_bytes()
    bad["truncated"] = root / "junk" / "cut_in_pixels.dcm"
    bad["truncated"].write_bytes(data[: len(data) - 200])
    bad["not_dicom"] = root / "junk" / "random.dcm"
    bad["not_dicom"].write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    ds = pydicom.dcmread(good[1])
    del ds.PixelData
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    bad["no_pixel_data"] = root / "junk" / "no_pixels"
    ds.save_as(bad["no_pixel_data"], enforce_file_format=True)
    series_writer(root / "mixed", sizes={5: (20, 16), 6: (20, 16)}, seed=2)
    series_writer(root / "gap", skip=(10, 11, 12, 13), seed=3)
    series_writer(root / "thick", thickness=7.0, seed=4)
    series_writer(root / "few", n=8, seed=5)
    series_writer(root / "mr", modality="MR", seed=6)
    return bad


def test_each_bad_input_has_its_code(tmp_path: Path, series_writer, indexer) -> None:  # noqa: ANN001
    bad = _bad_archive(tmp_path / "a", series_writer)
    summary = indexer(tmp_path / "a", tmp_path / "db.duckdb")
    store = Store(tmp_path / "db.duckdb")
    unreadable = store.query("SELECT path, reason_code, reason FROM unreadable")
    got = dict(zip(unreadable.path, unreadable.reason_code, strict=True))
    assert got == {str(p.absolute()): code for code, p in bad.items()}
    assert all(unreadable.reason.str.len() > 20)
    assert summary.unreadable == {code: 1 for code in bad}
    series = store.query("SELECT * FROM series")
    codes = series.groupby("reason_code", dropna=False).size().to_dict()
    for code in ("mixed_sizes", "slice_gap", "thick_slices", "too_few_slices", "not_ct"):
        assert codes.get(code) == 1, code
        assert code in REASONS
    reasons = dict(zip(series.reason_code, series.reason, strict=True))
    assert "7 mm thick" in reasons["thick_slices"]
    assert "8 slices" in reasons["too_few_slices"]
    assert "MR" in reasons["not_ct"]
    assert "16x16" in reasons["mixed_sizes"] and "20x16" in reasons["mixed_sizes"]
    assert "25.0 mm apart" in reasons["slice_gap"]
    # the good series (slice 1 reused for no_pixel_data has its own UID) is selected
    assert series.selected.sum() == 1
    assert summary.excluded["too_few_slices"] == 1


def test_truncated_header_and_small_gaps(tmp_path: Path, series_writer, indexer) -> None:  # noqa: ANN001
    paths = series_writer(tmp_path / "a" / "s", skip=(10,), seed=8)  # one missing slice: 10 mm
    data = paths[0].read_bytes()
    cut = tmp_path / "a" / "cut_in_header.dcm"
    cut.write_bytes(data[:600])
    # cut exactly between two elements, before StudyInstanceUID (0020,000D): no value is
    # short, the identifiers are missing (the UIDs are random, so a cut at byte 600 lands
    # on such a boundary now and then; both parsers must call it truncated)
    boundary = data.index(b"\x20\x00\x0d\x00UI")
    (tmp_path / "a" / "cut_at_element.dcm").write_bytes(data[:boundary])
    indexer(tmp_path / "a", tmp_path / "db.duckdb")
    store = Store(tmp_path / "db.duckdb")
    codes = store.query("SELECT reason_code FROM unreadable").reason_code.tolist()
    assert codes == ["truncated", "truncated"]
    s = store.query("SELECT selected, max_gap_mm FROM series")
    assert s.selected.tolist() == [True] and s.max_gap_mm[0] == 10.0


def test_cli_exits_0_and_counts_bad_files(tmp_path: Path, series_writer) -> None:  # noqa: ANN001
    _bad_archive(tmp_path / "a", series_writer)
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", "index", str(tmp_path / "a"), "--db",
         str(tmp_path / "db.duckdb"), "--workers", "2"],
        capture_output=True, text=True, check=False, env={**os.environ, "VFRISK_CONFIG": ""},
        cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "unreadable   4 (" in text
    for code in ("empty_file 1", "truncated 1", "not_dicom 1", "no_pixel_data 1"):
        assert code in text
    for code in ("mixed_sizes 1", "slice_gap 1", "thick_slices 1", "too_few_slices 1", "not_ct 1"):
        assert code in text
    assert "selected     1 series" in text
    assert "index:" in out.stderr  # the tqdm bar
    shutil.rmtree(tmp_path / "a")
