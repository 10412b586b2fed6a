"""Read one DICOM file into image frames: stored pixels plus per-frame geometry and rescale.

Classic single-frame images (CT Image Storage) and Enhanced (multi-frame) CT, whose
geometry and rescale live per frame in the Per-frame Functional Groups Sequence or, shared
by all frames, in the Shared Functional Groups Sequence (PS3.3 C.7.6.16), give the same
:class:`Frame` records. :func:`read_frames` reads any file with pydicom and decodes its
pixels once, here: uncompressed little-endian 16-bit data is viewed straight from the
file's bytes with ``numpy.frombuffer``; everything else (big endian, JPEG Lossless,
JPEG-LS, JPEG 2000, RLE) goes through pydicom's decoders (pylibjpeg, python-gdcm). Every
failure is a :class:`~engine.errors.VfriskError` naming the file and, for codecs, the
package to install. Plain files may instead come from :mod:`engine.load.plain`, whose
frames hold :class:`StoredPixels`, where in the file their pixels lie, read only when
:func:`to_hu` converts them.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from engine.archive_paths import is_zip_member, read_member
from engine.errors import VfriskError
from engine.load.volume import AIR_HU

__all__ = ["Frame", "StoredPixels", "decode_hu", "read_frames", "to_hu"]

# What to install when pydicom has no decoder for a transfer syntax (by UID prefix).
_CODEC_HINTS = {
    "1.2.840.10008.1.2.4.5": "pylibjpeg-libjpeg (JPEG baseline/extended/lossless)",
    "1.2.840.10008.1.2.4.7": "pylibjpeg-libjpeg (JPEG Lossless)",
    "1.2.840.10008.1.2.4.8": "pylibjpeg-libjpeg (JPEG-LS)",
    "1.2.840.10008.1.2.4.9": "pylibjpeg-openjpeg (JPEG 2000)",
    "1.2.840.10008.1.2.4.20": "pylibjpeg-openjpeg (HTJ2K)",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (RLE Lossless)",
}


@dataclass(frozen=True, slots=True)
class StoredPixels:
    """Where a frame's uncompressed little-endian 16-bit stored values lie in its file.

    Attributes
    ----------
    path : str
        The file.
    offset : int
        Byte offset of the first pixel.
    shape : tuple of int
        (rows, cols).
    signed : bool
        PixelRepresentation 1: two's complement ``<i2``, else ``<u2``.
    bits_stored : int
        BitsStored; signed values are sign-extended from it (PS3.5 8.1.1).
    """

    path: str
    offset: int
    shape: tuple[int, int]
    signed: bool
    bits_stored: int

    def read(self, scratch: np.ndarray | None = None) -> np.ndarray:
        """The stored values, shape (rows, cols), read into ``scratch`` when given.

        ``scratch``: any 2-byte dtype, at least rows x cols values, C-contiguous; reusing
        one buffer for every slice keeps it in cache while :func:`to_hu` converts it.
        """
        count = self.shape[0] * self.shape[1]
        dtype = np.dtype("<i2" if self.signed else "<u2")
        if scratch is None:
            out = np.empty(count, dtype=dtype)
        else:
            out = scratch.reshape(-1)[:count].view(dtype)
        with open(self.path, "rb", buffering=0) as fp:
            fp.seek(self.offset)
            got = fp.readinto(memoryview(out).cast("B"))
        if got != 2 * count:
            raise VfriskError(
                "truncated",
                f"{self.path}: pixel data holds {got} bytes of the {2 * count} expected; "
                "the file changed while it was read, or was cut off; copy it again",
            )
        if self.signed and self.bits_stored < 16:  # sign-extend from BitsStored
            shift = 16 - self.bits_stored
            np.left_shift(out, shift, out=out)
            np.right_shift(out, shift, out=out)
        return out.reshape(self.shape)


@dataclass(frozen=True)
class Frame:
    """One image plane of a file.

    Attributes
    ----------
    path : str
        The file it came from.
    sop_uid : str
        SOPInstanceUID of the file (shared by the frames of a multi-frame file).
    series_uid : str
        SeriesInstanceUID (empty when absent).
    index : int
        Frame number inside the file, 0-based.
    ipp : tuple of float
        ImagePositionPatient (x, y, z) in mm, LPS: centre of the first pixel.
    iop : tuple of float
        ImageOrientationPatient: row direction (3), then column direction (3).
    spacing_rc : tuple of float
        PixelSpacing: (between rows, between columns) in mm.
    thickness : float
        SliceThickness in mm (1.0 when absent); the slice spacing of a one-slice stack.
    slope, intercept : float
        RescaleSlope and RescaleIntercept: ``HU = stored * slope + intercept``.
    padding : tuple of int or None
        Inclusive range of stored values that are padding (PS3.3 C.7.5.1.1.2).
    data : np.ndarray or StoredPixels
        Stored values, shape (rows, cols), integer dtype; or where in the file they lie,
        read on use (see :attr:`pixels`).
    """

    path: str
    sop_uid: str
    series_uid: str
    index: int
    ipp: tuple[float, float, float]
    iop: tuple[float, ...]
    spacing_rc: tuple[float, float]
    thickness: float
    slope: float
    intercept: float
    padding: tuple[int, int] | None
    data: np.ndarray | StoredPixels

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols), without reading pixels."""
        rows, cols = self.data.shape
        return rows, cols

    @property
    def pixels(self) -> np.ndarray:
        """Stored values, shape (rows, cols), integer dtype (read from the file if needed)."""
        data = self.data
        return data if isinstance(data, np.ndarray) else data.read()

    def stored(self, scratch: np.ndarray | None = None) -> np.ndarray:
        """:attr:`pixels`, read into ``scratch`` (see :meth:`StoredPixels.read`) if needed."""
        data = self.data
        return data if isinstance(data, np.ndarray) else data.read(scratch)


def _read_dataset(path: str) -> Dataset:
    source: str | io.BytesIO = path
    try:
        if is_zip_member(path):
            source = read_member(path)
            size = len(source.getbuffer())
        else:
            size = os.path.getsize(path)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise VfriskError("not_dicom", f"{path} cannot be read: {exc}") from None
    if size == 0:
        raise VfriskError("empty_file", f"{path} is empty (0 bytes); copy it again")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(source)
        except InvalidDicomError:
            raise VfriskError(
                "not_dicom", f"{path} is not a DICOM file (no 'DICM' preamble)"
            ) from None
        except (EOFError, OSError) as exc:
            raise VfriskError(
                "truncated", f"{path} ends inside its header ({exc}); copy it again"
            ) from None
        except Exception as exc:  # pydicom raises many types on damaged headers
            raise VfriskError("bad_header", f"{path}: the header cannot be parsed: {exc}") from None
    if any("End of file" in str(w.message) for w in caught) or _last_element_cut(ds):
        raise VfriskError("truncated", f"{path} ends before its data does; copy it again")
    return ds


def _last_element_cut(ds: Dataset) -> bool:
    """Whether the last element read holds fewer bytes than its header declares.

    pydicom stops silently at the end of a file cut inside an element's value.
    """
    if len(ds) == 0:
        return False
    raw = ds.get_item(next(reversed(ds.keys())))
    length = getattr(raw, "length", None)
    value = getattr(raw, "value", None)
    if length is None or length == 0xFFFFFFFF or not isinstance(value, bytes):
        return False
    return len(value) < length


def _padding(ds: Dataset) -> tuple[int, int] | None:
    if "PixelPaddingValue" not in ds:
        return None
    values = []
    for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        if keyword in ds:
            v = int(ds[keyword].value)
            # stored as US although the pixels are signed: reinterpret the 16-bit pattern
            if ds.get("PixelRepresentation", 0) == 1 and v > 32767:
                v -= 65536
            values.append(v)
    return min(values), max(values)


def _fast_pixels(ds: Dataset, n_frames: int) -> np.ndarray | None:
    """Stored pixels viewed from the bytes of uncompressed little-endian 16-bit data."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or syntax.is_compressed or not syntax.is_little_endian:
        return None
    if ds.get("BitsAllocated") != 16 or ds.get("SamplesPerPixel", 1) != 1:
        return None
    signed = ds.get("PixelRepresentation", 0) == 1
    count = n_frames * int(ds.Rows) * int(ds.Columns)
    data = ds.PixelData
    if len(data) < 2 * count:
        raise VfriskError(
            "truncated",
            f"{ds.filename}: pixel data holds {len(data)} bytes of the {2 * count} expected; "
            "the file was cut off, copy it again",
        )
    out = np.frombuffer(data, dtype="<i2" if signed else "<u2", count=count)
    bits = int(ds.get("BitsStored", 16))
    if signed and bits < 16:  # sign-extend from BitsStored (PS3.5 8.1.1)
        shift = 16 - bits
        out = (out << shift) >> shift
    return out.reshape(n_frames, int(ds.Rows), int(ds.Columns))


def _decode(ds: Dataset, path: str, n_frames: int) -> np.ndarray:
    """Stored pixel values, shape (n_frames, rows, cols)."""
    if ds.get("SamplesPerPixel", 1) != 1:
        raise VfriskError(
            "bad_header", f"{path} has {ds.SamplesPerPixel} samples per pixel; CT is grayscale"
        )
    fast = _fast_pixels(ds, n_frames)
    if fast is not None:
        return fast
    syntax = ds.file_meta.get("TransferSyntaxUID", "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except NotImplementedError as exc:
        hint = next((v for k, v in _CODEC_HINTS.items() if str(syntax).startswith(k)), None)
        todo = f"install {hint} or python-gdcm" if hint else "convert it with DCMTK or gdcmconv"
        raise VfriskError(
            "unsupported_transfer_syntax",
            f"{path}: transfer syntax {syntax} ({getattr(syntax, 'name', '?')}) cannot be "
            f"decoded here ({exc}); {todo}",
        ) from None
    except Exception as exc:
        if "less than expected" in str(exc):
            raise VfriskError(
                "truncated", f"{path}: pixel data is shorter than its header says; copy it again"
            ) from None
        raise VfriskError("decode_failed", f"{path}: pixels cannot be decoded: {exc}") from None
    return arr.reshape(n_frames, int(ds.Rows), int(ds.Columns))


_DEFAULTS = {
    "ImagePositionPatient": (0.0, 0.0, 0.0),
    "ImageOrientationPatient": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "PixelSpacing": (1.0, 1.0),
}


def _floats(
    ds: Dataset, keyword: str, n: int, path: str, where: str, required: bool
) -> tuple[float, ...]:
    value = ds.get(keyword)
    if value is None and not required:
        return _DEFAULTS[keyword]
    if value is None:
        raise VfriskError("bad_header", f"{path}: {keyword} is missing{where}")
    try:
        values = tuple(float(v) for v in (value if n > 1 else [value]))
    except (TypeError, ValueError):
        raise VfriskError("bad_header", f"{path}: {keyword} {value!r} is not numeric") from None
    if len(values) != n:
        raise VfriskError("bad_header", f"{path}: {keyword} has {len(values)} values, not {n}")
    return values


def _group(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The functional group item ``sequence`` of a frame: per-frame first, then shared."""
    for container, i in (("PerFrameFunctionalGroupsSequence", frame),
                         ("SharedFunctionalGroupsSequence", 0)):  # fmt: skip
        items = ds.get(container)
        if items is not None and len(items) > i and sequence in items[i]:
            inner = items[i][sequence]
            if len(inner.value) > 0:
                return inner.value[0]
    return None


def read_frames(path: Path | str, *, require_geometry: bool = True) -> list[Frame]:
    """Every frame of one DICOM file, pixels decoded.

    Parameters
    ----------
    path : path-like
        A single-frame image or an Enhanced (multi-frame) image.
    require_geometry : bool, optional
        Refuse (``bad_header``) a frame without ImagePositionPatient,
        ImageOrientationPatient or PixelSpacing; when False they default to the origin,
        axial and 1 mm (for decoding pixels alone).

    Returns
    -------
    list of Frame
        In the file's frame order.

    Raises
    ------
    VfriskError
        ``empty_file``, ``not_dicom``, ``truncated``, ``bad_header``, ``no_pixel_data``,
        ``unsupported_transfer_syntax`` or ``decode_failed``, naming the file.
    """
    path = str(path)
    ds = _read_dataset(path)
    if "PixelData" not in ds:
        if "Rows" in ds:
            raise VfriskError(
                "truncated", f"{path} has an image header but ends before its pixel data"
            )
        raise VfriskError("no_pixel_data", f"{path} holds no pixel data (no Image Pixel module)")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = _decode(ds, path, n_frames)
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    sop_uid = str(ds.get("SOPInstanceUID", path))
    series_uid = str(ds.get("SeriesInstanceUID", ""))
    padding = _padding(ds)
    need = require_geometry
    frames = []
    for f in range(n_frames):
        if enhanced:
            pos = _group(ds, f, "PlanePositionSequence")
            ori = _group(ds, f, "PlaneOrientationSequence")
            meas = _group(ds, f, "PixelMeasuresSequence")
            vt = _group(ds, f, "PixelValueTransformationSequence")
            where = f" for frame {f + 1} in the functional groups"
            empty = Dataset()
            ipp = _floats(pos or empty, "ImagePositionPatient", 3, path, where, need)
            iop = _floats(ori or empty, "ImageOrientationPatient", 6, path, where, need)
            spacing = _floats(meas or empty, "PixelSpacing", 2, path, where, need)
            rescale = vt if vt is not None else ds
            thickness = (meas or ds).get("SliceThickness")
        else:
            ipp = _floats(ds, "ImagePositionPatient", 3, path, "", need)
            iop = _floats(ds, "ImageOrientationPatient", 6, path, "", need)
            spacing = _floats(ds, "PixelSpacing", 2, path, "", need)
            rescale = ds
            thickness = ds.get("SliceThickness")
        thickness = float(thickness) if thickness not in (None, "") else 1.0
        slope = float(rescale.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(rescale.get("RescaleIntercept", 0.0) or 0.0)
        frames.append(
            Frame(path, sop_uid, series_uid, f, (ipp[0], ipp[1], ipp[2]), iop,
                  (spacing[0], spacing[1]), thickness or 1.0, slope, intercept, padding, pixels[f])
        )  # fmt: skip
    return frames


def to_hu(frame: Frame, out: np.ndarray, scratch: np.ndarray | None = None) -> None:
    """Write a frame's HU into ``out`` (float32, shape (rows, cols)) without temporaries.

    ``HU = stored * slope + intercept``; padding values (PixelPaddingValue up to
    PixelPaddingRangeLimit) and values below air (out-of-field pixels outside the
    reconstruction circle) become air, -1024 HU. ``scratch`` (2-byte dtype, rows x cols
    values) receives the stored values of a frame read from its file
    (:class:`StoredPixels`).
    """
    pixels = frame.stored(scratch)
    air = np.float32(AIR_HU)
    if frame.slope == 1.0:
        # one pass from the stored dtype into float32: floor at the stored value of air,
        # then shift by the intercept (a second pass only when the intercept is not 0)
        np.maximum(pixels, air - np.float32(frame.intercept), out=out, casting="unsafe")
        if frame.intercept != 0.0:
            out += np.float32(frame.intercept)
    else:
        np.multiply(pixels, np.float32(frame.slope), out=out, casting="unsafe")
        out += np.float32(frame.intercept)
        np.maximum(out, air, out=out)
    if frame.padding is not None:
        lo, hi = frame.padding
        # padding that rescales below air (GE -2000 with intercept -1024, Canon -3024) is
        # already air after the floor; only padding that would read as tissue is masked
        if max(lo * frame.slope, hi * frame.slope) + frame.intercept >= AIR_HU:
            mask = pixels == lo if lo == hi else (pixels >= lo) & (pixels <= hi)
            out[mask] = air


def decode_hu(path: Path | str) -> np.ndarray:
    """HU of every frame of one file, in stored layout (no reorientation), air floor applied.

    Parameters
    ----------
    path : path-like
        A DICOM image file.

    Returns
    -------
    np.ndarray
        float32, shape (n_frames, rows, cols), HU; padding and sub-air values -> -1024.
    """
    frames = read_frames(path, require_geometry=False)
    rows, cols = frames[0].shape
    out = np.empty((len(frames), rows, cols), dtype=np.float32)
    for n, frame in enumerate(frames):
        to_hu(frame, out[n])
    return out
