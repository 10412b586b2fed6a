"""Safe unpacking of an upload on "Score a scan": size and member limits, no path traversal,
no zip bombs, no links.

An upload is one or more files: a zip of one DICOM series, the series' files themselves,
or one NIfTI volume. Everything lands flat or below a fresh folder; nothing is trusted:

* the upload's total size is capped (Streamlit's ``server.maxUploadSize`` already is);
* a zip may hold at most ``max_members`` entries; each member's name must stay inside the
  folder (no absolute path, drive letter, ``..`` component or backslash trick), may not be
  a symbolic link or encrypted, and may not inflate more than ``max_ratio`` times;
* the unpacked total is capped at ``max_unpacked_bytes``, counted on the bytes actually
  written (a member lying about its size is caught while it is read);
* nested zips are not opened.

Every refusal raises ``VfriskError('upload_refused', ...)`` naming the file or member and
the limit, and leaves nothing half-extracted behind (the caller's folder is temporary).
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.errors import VfriskError

__all__ = ["UploadLimits", "extract_upload", "scan_inputs"]

_CHUNK = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class UploadLimits:
    """Limits of one upload (bytes, members, inflation ratio)."""

    max_upload_bytes: int
    max_members: int
    max_unpacked_bytes: int
    max_ratio: float

    @classmethod
    def from_settings(cls, settings: object) -> UploadLimits:
        """From :class:`dashboard.settings.DashboardSettings` (MB -> bytes)."""
        return cls(
            max_upload_bytes=int(settings.max_upload_mb) << 20,
            max_members=int(settings.max_members),
            max_unpacked_bytes=int(settings.max_unpacked_mb) << 20,
            max_ratio=float(settings.max_ratio),
        )


def _refuse(message: str) -> VfriskError:
    return VfriskError("upload_refused", message)


def _safe_name(name: str, where: str) -> PurePosixPath:
    """A member or file name as a relative path that cannot leave the folder."""
    if "\x00" in name:
        raise _refuse(f"{where}: the name {name!r} holds a NUL byte")
    parts = PurePosixPath(name.replace("\\", "/"))
    if parts.is_absolute() or (parts.parts and parts.parts[0].endswith(":")):
        raise _refuse(
            f"{where}: {name!r} is an absolute path; refusing to write outside the upload"
        )
    clean = [p for p in parts.parts if p not in ("", ".")]
    if ".." in clean:
        raise _refuse(f"{where}: {name!r} climbs out of the upload folder (path traversal)")
    if not clean:
        raise _refuse(f"{where}: empty member name {name!r}")
    return PurePosixPath(*clean)


def _unzip(
    blob: bytes, zip_name: str, dest: Path, limits: UploadLimits, budget: list[int]
) -> list[Path]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except zipfile.BadZipFile as exc:
        raise _refuse(f"{zip_name} is not a readable zip file ({exc})") from None
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise _refuse(
            f"{zip_name} holds {len(members):,} members, more than the limit of "
            f"{limits.max_members:,} ([dashboard] max_members)"
        )
    declared = sum(m.file_size for m in members)
    if declared > budget[0]:
        raise _refuse(
            f"{zip_name} would unpack to {declared / 2**20:,.0f} MB, more than the limit of "
            f"{limits.max_unpacked_bytes / 2**20:,.0f} MB ([dashboard] max_unpacked_mb): "
            "refusing a possible zip bomb"
        )
    out: list[Path] = []
    for m in members:
        where = f"{zip_name}!{m.filename}"
        rel = _safe_name(m.filename, where)
        if m.is_dir():
            continue
        mode = m.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise _refuse(f"{where} is a symbolic link; links are not extracted")
        if m.flag_bits & 0x1:
            raise _refuse(f"{where} is encrypted; upload an unencrypted zip")
        if m.file_size > 0 and m.file_size > limits.max_ratio * max(m.compress_size, 1):
            raise _refuse(
                f"{where} inflates {m.file_size / max(m.compress_size, 1):,.0f} times, more "
                f"than the limit of {limits.max_ratio:g} ([dashboard] max_ratio): refusing a "
                "zip bomb"
            )
        target = dest.joinpath(*rel.parts)
        if dest.resolve() not in target.resolve().parents:
            raise _refuse(f"{where} resolves outside the upload folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with archive.open(m) as src, open(target, "xb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > m.file_size or written > budget[0]:
                    raise _refuse(
                        f"{where} unpacks to more bytes than it declares or than the limit "
                        "allows: refusing a zip bomb"
                    )
                dst.write(chunk)
        budget[0] -= written
        out.append(target)
    return out


def extract_upload(
    files: Sequence[tuple[str, bytes]], dest: Path, limits: UploadLimits
) -> list[Path]:
    """Write an upload into ``dest`` (an empty folder); return the files written.

    Parameters
    ----------
    files : sequence of (name, bytes)
        The uploaded files as the browser named them.
    dest : Path
        An existing empty folder (a temporary one).
    limits : UploadLimits

    Raises
    ------
    VfriskError
        ``upload_refused``, naming the file or member and the limit.
    """
    if not files:
        raise _refuse("nothing was uploaded")
    total = sum(len(b) for _, b in files)
    if total > limits.max_upload_bytes:
        raise _refuse(
            f"the upload is {total / 2**20:,.1f} MB, more than the limit of "
            f"{limits.max_upload_bytes / 2**20:,.0f} MB ([dashboard] max_upload_mb)"
        )
    budget = [limits.max_unpacked_bytes]
    out: list[Path] = []
    for i, (name, blob) in enumerate(files):
        base = _safe_name(name, name).name  # loose files land flat, by their base name
        if blob[:4] == _ZIP_MAGIC:
            sub = dest / f"zip{i:03d}"
            sub.mkdir()
            out += _unzip(blob, base, sub, limits, budget)
            continue
        if len(blob) > budget[0]:
            raise _refuse(f"{name}: the upload exceeds the unpacked size limit")
        budget[0] -= len(blob)
        target = dest / f"f{i:05d}_{base}"
        target.write_bytes(blob)
        out.append(target)
    return out


def scan_inputs(paths: Sequence[Path]) -> Path | list[Path]:
    """What to load: the one NIfTI volume, else every file as one DICOM series.

    Raises
    ------
    VfriskError
        ``upload_refused`` when the upload holds several NIfTI files, or NIfTI mixed with
        other files, or no file at all.
    """
    files = [p for p in paths if p.is_file() and p.name.upper() != "DICOMDIR"]
    nifti = [p for p in files if p.name.lower().endswith((".nii", ".nii.gz"))]
    if not files:
        raise _refuse("the upload holds no file")
    if nifti:
        if len(nifti) > 1 or len(files) > len(nifti) + sum(p.suffix == ".json" for p in files):
            raise _refuse(
                "upload one NIfTI volume (optionally with its .json sidecar) or the files of "
                "one DICOM series, not both"
            )
        return nifti[0]
    return files
