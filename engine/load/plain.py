"""Fast path of the loader: the header of a plain single-frame image without pydicom.

Most series files are classic single-frame CT images, uncompressed little endian, 16 bits
allocated: :func:`read_plain_frame` walks their header with the project's one raw parser
(:func:`engine.dicom_raw.scan_header`), decodes the dozen values the loader needs from
their raw bytes, and returns a :class:`~engine.load.frames.Frame` whose pixels are only
located (:class:`~engine.load.frames.StoredPixels`), to be read straight into the volume
by :func:`~engine.load.frames.to_hu`. Parsing costs about a quarter of
``pydicom.dcmread``, which for a 512 x 512 slice is as much as reading its pixels.

It never refuses a file. Anything it does not handle exactly as
:func:`engine.load.frames.read_frames` would returns ``None``, and the caller reads the
file with pydicom, so values, warnings and every reason code come out identical: zip
members; what the raw scanner steps aside for; compressed, big endian or deflated
transfer syntaxes; Enhanced multi-frame images; BitsAllocated other than 16, more than one
sample per pixel; a missing or malformed geometry, rescale or UID value; an explicit VR
other than the data dictionary's; a padding value whose reading depends on its VR; pixel
data shorter than Rows x Columns, not the last element, or running past the file's end.
"""

from __future__ import annotations

import os
import struct

from engine.archive_paths import is_zip_member
from engine.dicom_raw import scan_header
from engine.load.frames import Frame, StoredPixels

__all__ = ["read_plain_frame"]

#: Transfer syntaxes of native (not encapsulated) little-endian pixel data.
_NATIVE_LE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
_PIXEL_DATA = 0x7FE00010
_SOP_UID, _SERIES_UID, _THICKNESS = 0x00080018, 0x0020000E, 0x00180050
_IPP, _IOP, _FRAMES, _SPACING = 0x00200032, 0x00200037, 0x00280008, 0x00280030
_INTERCEPT, _SLOPE = 0x00281052, 0x00281053
_SAMPLES, _ROWS, _COLUMNS = 0x00280002, 0x00280010, 0x00280011
_ALLOCATED, _STORED, _REPRESENTATION = 0x00280100, 0x00280101, 0x00280103
_PADDING, _PADDING_LIMIT = 0x00280120, 0x00280121
#: Wanted tags and the explicit VRs read as pydicom would (PS3.6 data dictionary).
_UI, _DS, _IS, _US, _US_SS = (b"UI",), (b"DS",), (b"IS",), (b"US",), (b"US", b"SS")
_TEXT_VRS = {
    _SOP_UID: _UI, _SERIES_UID: _UI, _THICKNESS: _DS, _IPP: _DS, _IOP: _DS,
    _FRAMES: _IS, _SPACING: _DS, _INTERCEPT: _DS, _SLOPE: _DS,
}  # fmt: skip
_BINARY_VRS = {
    _SAMPLES: _US, _ROWS: _US, _COLUMNS: _US, _ALLOCATED: _US, _STORED: _US,
    _REPRESENTATION: _US, _PADDING: _US_SS, _PADDING_LIMIT: _US_SS,
}  # fmt: skip
_VRS = _TEXT_VRS | _BINARY_VRS
_TEXT_TAGS = frozenset(_TEXT_VRS)
_BINARY_TAGS = frozenset(_BINARY_VRS)
_U16 = struct.Struct("<H").unpack


class _Declined(Exception):
    """The file goes through pydicom (see the module docstring)."""


def _ushort(values: dict[int, bytes], tag: int, default: int | None) -> int | None:
    """A US value (the default when absent); one value of 2 bytes, else pydicom decides."""
    value = values.get(tag)
    if value is None:
        return default
    if len(value) != 2:
        raise _Declined
    return _U16(value)[0]


def _text(values: dict[int, bytes], tag: int) -> str | None:
    """A UI/DS/IS value as pydicom reads it (trailing nulls and spaces dropped)."""
    value = values.get(tag)
    return None if value is None else value.decode("ascii").rstrip("\x00 ")


def _uid(values: dict[int, bytes], tag: int, default: str) -> str:
    text = _text(values, tag)
    if text is None:
        return default
    if "\\" in text:  # several values: pydicom's MultiValue prints differently
        raise _Declined
    return text


def _decimals(values: dict[int, bytes], tag: int, n: int) -> tuple[float, ...]:
    """``n`` DS values; absent, empty or malformed ones leave the error to pydicom."""
    text = _text(values, tag)
    if not text:
        raise _Declined
    parts = text.split("\\")
    if len(parts) != n:
        raise _Declined
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise _Declined from None


def _decimal(values: dict[int, bytes], tag: int, default: float) -> float:
    """One DS value; absent or empty -> ``default`` (as ``float(ds.get(k) or default)``)."""
    text = _text(values, tag)
    text = text.strip() if text is not None else ""
    if not text:
        return default
    if "\\" in text:
        raise _Declined
    try:
        return float(text)
    except ValueError:
        raise _Declined from None


def _padding(values: dict[int, bytes], signed: bool) -> tuple[int, int] | None:
    """Like ``frames._padding``: the US bit pattern read as signed for signed pixels."""
    if _PADDING not in values:
        return None
    found = []
    for tag in (_PADDING, _PADDING_LIMIT):
        v = _ushort(values, tag, None)
        if v is None:
            continue
        if v > 32767:
            if not signed:
                raise _Declined  # SS reads negative, US positive: pydicom knows the VR
            v -= 65536
        found.append(v)
    return min(found), max(found)


def _frame(path: str) -> Frame:
    with open(path, "rb", buffering=0) as fp:
        size = os.fstat(fp.fileno()).st_size
        if size == 0:
            raise _Declined
        raw = scan_header(fp, size, _TEXT_TAGS, _BINARY_TAGS)
    if raw is None or raw.transfer_syntax not in _NATIVE_LE or raw.pixel_tag != _PIXEL_DATA:
        raise _Declined
    values, vrs = raw.values, raw.vrs
    for tag, vr in vrs.items():
        if vr not in _VRS[tag]:
            raise _Declined
    frames = _text(values, _FRAMES)
    if frames is not None and frames.strip() not in ("", "1"):
        raise _Declined  # multi-frame
    if _ushort(values, _SAMPLES, 1) != 1 or _ushort(values, _ALLOCATED, None) != 16:
        raise _Declined
    rows, cols = _ushort(values, _ROWS, None), _ushort(values, _COLUMNS, None)
    bits = _ushort(values, _STORED, 16)
    if not rows or not cols or bits is None or not 1 <= bits <= 16:
        raise _Declined
    length = raw.pixel_length
    if length < 2 * rows * cols or raw.pixel_start + length != size:
        raise _Declined  # short, followed by more elements, or cut off: pydicom's words
    signed = _ushort(values, _REPRESENTATION, 0) == 1
    ipp = _decimals(values, _IPP, 3)
    iop = _decimals(values, _IOP, 6)
    spacing = _decimals(values, _SPACING, 2)
    thickness = _decimal(values, _THICKNESS, 1.0)
    return Frame(
        path=path,
        sop_uid=_uid(values, _SOP_UID, path),
        series_uid=_uid(values, _SERIES_UID, ""),
        index=0,
        ipp=(ipp[0], ipp[1], ipp[2]),
        iop=iop,
        spacing_rc=(spacing[0], spacing[1]),
        thickness=thickness or 1.0,
        slope=_decimal(values, _SLOPE, 1.0) or 1.0,
        intercept=_decimal(values, _INTERCEPT, 0.0),
        padding=_padding(values, signed),
        data=StoredPixels(path, raw.pixel_start, (rows, cols), signed, bits),
    )


def read_plain_frame(path: str) -> Frame | None:
    """The one frame of a plain single-frame image, pixels not yet read; else ``None``.

    Parameters
    ----------
    path : str
        A file path (zip members are left to pydicom).

    Returns
    -------
    Frame or None
        Equal to ``read_frames(path)[0]`` except that ``data`` is a
        :class:`~engine.load.frames.StoredPixels`; ``None`` when the file needs pydicom
        (:func:`engine.load.frames.read_frames`), which also reports every error.
    """
    if is_zip_member(path):
        return None
    try:
        return _frame(path)
    except (_Declined, OSError, UnicodeDecodeError):
        return None
