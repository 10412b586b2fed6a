"""Paths of archive members: a file inside a zip is ``/abs/archive.zip!member/path``.

The indexer records zip members under such paths and the loader reads them back, so both
use this one convention.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

__all__ = ["ZIP_SEPARATOR", "is_zip_member", "read_member"]

ZIP_SEPARATOR = "!"


def is_zip_member(path: str | Path) -> bool:
    """Whether ``path`` names a member of a zip archive (``....zip!member``)."""
    text = str(path)
    return ZIP_SEPARATOR in text and text.split(ZIP_SEPARATOR, 1)[0].lower().endswith(".zip")


def read_member(path: str | Path) -> io.BytesIO:
    """The bytes of a zip member path as a file-like object.

    Raises
    ------
    OSError, KeyError, zipfile.BadZipFile
        When the zip or the member cannot be read.
    """
    zip_path, member = str(path).split(ZIP_SEPARATOR, 1)
    with zipfile.ZipFile(zip_path) as zf:
        return io.BytesIO(zf.read(member))
