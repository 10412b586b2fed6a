"""Find every file to index under an archive folder: any name, any depth.

* Every regular file is a candidate DICOM file, whatever its name or suffix (many PACS
  exports have none). Symbolic links to folders are not followed (no loops).
* ``DICOMDIR`` files (any case) are media directories, not images: they are recorded as
  ``dicomdir`` in ``unreadable`` and the files they list are indexed directly by the walk.
* ``*.zip`` archives are opened and each member is an entry with the path
  ``/abs/archive.zip!member/path`` (``ZIP_SEPARATOR``); its size is the member's
  uncompressed size and its mtime the zip file's, so any change to the zip re-reads its
  members. A zip that cannot be opened is one ``bad_zip`` entry. Zips inside zips are not
  opened (they are members like any other and come out ``not_dicom``).
* ``*.nii`` / ``*.nii.gz`` volumes are one entry each. A JSON sidecar with the same name
  (``scan.nii.gz`` -> ``scan.json``) belongs to its volume: it is not an entry of its own,
  but its size and mtime are folded into the volume's, so editing it re-reads the volume.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Collection, Iterator
from pathlib import Path

from engine.archive_paths import ZIP_SEPARATOR
from engine.index.records import FileEntry

__all__ = ["discover", "nifti_sidecar"]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _is_nifti(name: str) -> bool:
    return name.lower().endswith(_NIFTI_SUFFIXES)


def nifti_sidecar(path: str) -> str:
    """The JSON sidecar path of a NIfTI volume: ``scan.nii.gz`` -> ``scan.json``."""
    lower = path.lower()
    stem = path[: -len(".nii.gz")] if lower.endswith(".nii.gz") else path[: -len(".nii")]
    return stem + ".json"


def _zip_entries(path: str, mtime_ns: int, size: int) -> list[FileEntry]:
    try:
        with zipfile.ZipFile(path) as zf:
            members = [info for info in zf.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return [FileEntry(path, size, mtime_ns, "bad_zip", note=str(exc))]
    return [
        FileEntry(f"{path}{ZIP_SEPARATOR}{info.filename}", info.file_size, mtime_ns, "zip_member")
        for info in members
    ]


def _scan(folder: str, exclude: Collection[str]) -> Iterator[tuple[str, os.DirEntry[str]]]:
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError:
        return  # unreadable folder: nothing to index in it
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _scan(entry.path, exclude)
            elif entry.is_file() and entry.path not in exclude:
                yield entry.path, entry
        except OSError:
            continue


def discover(root: str | os.PathLike[str], exclude: Collection[str] = ()) -> list[FileEntry]:
    """Every entry to index under ``root``, sorted by path.

    Parameters
    ----------
    root : path-like
        The archive folder (made absolute).
    exclude : collection of str
        Absolute file paths to skip (the database and its lock files when they sit inside
        the archive).

    Returns
    -------
    list of FileEntry
        Sorted by ``path``; NIfTI sidecars are folded into their volumes.
    """
    found = dict(_scan(str(Path(root).absolute()), set(exclude)))
    sidecars = {nifti_sidecar(p) for p in found if _is_nifti(p)}
    out: list[FileEntry] = []
    for path, entry in found.items():
        if path in sidecars:
            continue
        try:
            st = entry.stat()
        except OSError:
            continue  # vanished since the listing
        name = entry.name
        if _is_nifti(name):
            size, mtime = st.st_size, st.st_mtime_ns
            side = found.get(nifti_sidecar(path))
            if side is not None:
                side_st = side.stat()
                size, mtime = size + side_st.st_size, max(mtime, side_st.st_mtime_ns)
            out.append(FileEntry(path, size, mtime, "nifti"))
        elif name.upper() == "DICOMDIR":
            out.append(FileEntry(path, st.st_size, st.st_mtime_ns, "dicomdir"))
        elif name.lower().endswith(".zip"):
            out.extend(_zip_entries(path, st.st_mtime_ns, st.st_size))
        else:
            out.append(FileEntry(path, st.st_size, st.st_mtime_ns, "dicom"))
    out.sort(key=lambda e: e.path)
    return out
