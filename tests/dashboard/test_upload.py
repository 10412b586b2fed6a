"""Safe extraction of uploads: limits, path traversal, zip bombs, links."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from dashboard.upload import UploadLimits, extract_upload, scan_inputs
from engine.errors import VfriskError

LIMITS = UploadLimits(
    max_upload_bytes=5 << 20, max_members=20, max_unpacked_bytes=8 << 20, max_ratio=50.0
)


def _zip(members: dict[str, bytes], *, links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _refused(files, tmp_path: Path, fragment: str) -> None:  # noqa: ANN001
    with pytest.raises(VfriskError) as exc:
        extract_upload(files, tmp_path, LIMITS)
    assert exc.value.code == "upload_refused"
    assert fragment in exc.value.message
    # nothing escaped the folder
    assert not (tmp_path.parent / "evil").exists()


def test_a_zip_of_a_series_unpacks_inside_the_folder(tmp_path) -> None:
    blob = _zip({"SE1/IM1": b"a" * 100, "SE1/IM2": b"b" * 100, "SE1/": b""})
    out = extract_upload([("series.zip", blob)], tmp_path, LIMITS)
    assert sorted(p.name for p in out) == ["IM1", "IM2"]
    assert all(tmp_path in p.parents for p in out)
    assert (out[0].read_bytes() + out[1].read_bytes()).count(b"a") == 100


def test_loose_files_land_flat_by_base_name(tmp_path) -> None:
    out = extract_upload([("IM4", b"x"), ("dir/IM5", b"y")], tmp_path, LIMITS)
    assert all(p.parent == tmp_path for p in out) and len(out) == 2
    _refused([("../../evil", b"x")], tmp_path, "path traversal")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../evil", "path traversal"),
        ("a/../../evil", "path traversal"),
        ("..\\evil", "path traversal"),
        ("/etc/evil", "absolute path"),
        ("C:/evil", "absolute path"),
    ],
)
def test_path_traversal_is_refused(tmp_path, name, fragment) -> None:
    dest = tmp_path / "in"
    dest.mkdir()
    _refused([("bad.zip", _zip({"ok": b"1", name: b"2"}))], dest, fragment)


def test_a_zip_bomb_is_refused_by_its_ratio(tmp_path) -> None:
    bomb = _zip({"zeros": bytes(4 << 20)})  # 4 MB of zeros deflate ~1000 times
    _refused([("bomb.zip", bomb)], tmp_path, "zip bomb")


def test_unpacked_total_is_capped(tmp_path) -> None:
    import random

    rnd = random.Random(0)
    members = {f"m{i}": rnd.randbytes(1 << 20) for i in range(3)}  # incompressible 3 MB
    limits = UploadLimits(5 << 20, 20, 2 << 20, 50.0)
    with pytest.raises(VfriskError, match="max_unpacked_mb"):
        extract_upload([("big.zip", _zip(members))], tmp_path, limits)


def test_too_many_members_are_refused(tmp_path) -> None:
    _refused([("many.zip", _zip({f"m{i}": b"x" for i in range(21)}))], tmp_path, "max_members")


def test_an_upload_over_the_size_limit_is_refused(tmp_path) -> None:
    _refused([("big.dcm", bytes(6 << 20))], tmp_path, "max_upload_mb")


def test_links_are_not_extracted(tmp_path) -> None:
    _refused([("l.zip", _zip({"a": b"1"}, links=("link",)))], tmp_path, "symbolic link")


def test_a_broken_zip_is_refused(tmp_path) -> None:
    _refused([("x.zip", b"PK\x03\x04 not really a zip")], tmp_path, "not a readable zip")


def test_scan_inputs_picks_the_nifti_or_the_series(tmp_path) -> None:
    a, b = tmp_path / "IM1", tmp_path / "scan.nii.gz"
    d = tmp_path / "DICOMDIR"
    for p in (a, b, d):
        p.write_bytes(b"x")
    assert scan_inputs([a, d]) == [a]
    assert scan_inputs([b]) == b
    with pytest.raises(VfriskError, match="not both"):
        scan_inputs([a, b])
    with pytest.raises(VfriskError, match="no file"):
        scan_inputs([])
