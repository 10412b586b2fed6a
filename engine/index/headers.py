"""Read one file's DICOM header (never its pixels) into an ``InstanceRecord`` or ``Unreadable``.

``pydicom.dcmread(fp, stop_before_pixels=True)`` leaves ``fp`` at the start of the pixel
data element when there is one, so its 8-12 byte element header is read there to check,
without loading pixels, that the pixels exist and fit in the file (a CT image without them
is ``no_pixel_data``, one cut short is ``truncated``). Plain files skip pydicom
altogether (``engine.dicom_raw`` walks their raw elements, about 4x faster); the rest
go through pydicom, and both end in the same checks (``_interpret``). Values are decoded
straight from the raw elements because converting every element through pydicom costs
as much as parsing the file. PatientName, birth date and other direct identifiers are
never read into a record.

File-level reason codes: ``empty_file`` (0 bytes), ``not_dicom`` (no DICOM structure),
``truncated`` (ends before its data), ``bad_header`` (DICOM but lacks the UIDs needed to
group it, or unparseable), ``no_pixel_data`` (an image object without pixels),
``dicomdir`` (a media directory), ``bad_zip`` and ``bad_nifti``.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import re
import struct
import zipfile
from collections.abc import Callable, Sequence
from typing import IO, Any

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from engine.archive_paths import ZIP_SEPARATOR
from engine.dicom_raw import scan_header
from engine.errors import reason
from engine.index.records import FileEntry, InstanceRecord, Unreadable

__all__ = ["read_chunk", "read_entry", "read_dicom"]

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)+$")

# Tags read on the fast path (int form of (group, element)).
_T = {
    "sop_class": 0x00080016,
    "sop_uid": 0x00080018,
    "study_date": 0x00080020,
    "modality": 0x00080060,
    "manufacturer": 0x00080070,
    "institution": 0x00080080,
    "image_type": 0x00080008,
    "series_description": 0x0008103E,
    "model": 0x00081090,
    "patient_id": 0x00100020,
    "body_part": 0x00180015,
    "slice_thickness": 0x00180050,
    "kernel": 0x00181210,
    "study_uid": 0x0020000D,
    "series_uid": 0x0020000E,
    "series_number": 0x00200011,
    "instance_number": 0x00200013,
    "ipp": 0x00200032,
    "iop": 0x00200037,
    "frames": 0x00280008,
    "rows": 0x00280010,
    "columns": 0x00280011,
    "pixel_spacing": 0x00280030,
}
_BINARY_TAGS = frozenset({_T["rows"], _T["columns"]})
_TEXT_TAGS = frozenset(_T.values()) - _BINARY_TAGS


def _bad(entry: FileEntry, code: str, detail: str) -> Unreadable:
    return Unreadable(entry.path, entry.size, entry.mtime_ns, code, f"{reason(code)} {detail}")


def _text(ds: pydicom.Dataset, tag: int) -> str:
    elem = ds.get_item(tag)
    if elem is None:
        return ""
    value = elem.value
    if isinstance(value, bytes):
        try:
            return value.decode("ascii").strip(" \x00")
        except UnicodeDecodeError:
            value = ds[tag].value  # let pydicom apply SpecificCharacterSet
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def _floats(text: str) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(v) for v in text.split("\\"))
    except ValueError:
        return None


def _int(text: str) -> int | None:
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


def _ushort(ds: pydicom.Dataset, tag: int, little: bool) -> int | None:
    elem = ds.get_item(tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        if len(value) < 2:
            return None
        return struct.unpack("<H" if little else ">H", value[:2])[0]
    return int(value) if value is not None else None


def _normal(iop: Sequence[float]) -> tuple[float, float, float]:
    r, c = iop[:3], iop[3:6]
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


def _along(normal: Sequence[float], ipp: Sequence[float]) -> float:
    return float(sum(n * p for n, p in zip(normal, ipp, strict=True)))


def _item(ds: Any, seq: str) -> Any:
    value = getattr(ds, seq, None)
    return value[0] if value else None


def _enhanced(ds: pydicom.Dataset) -> dict[str, Any]:
    """Geometry of a multi-frame (Enhanced CT) object from its functional groups."""
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    frames = list(getattr(ds, "PerFrameFunctionalGroupsSequence", []) or [])

    def find(group: str, attr: str, frame: Any = None) -> Any:
        for holder in (frame, frames[0] if frames else None, shared):
            item = _item(holder, group) if holder is not None else None
            if item is not None and attr in item:
                return item[attr].value
        return None

    out: dict[str, Any] = {}
    iop = find("PlaneOrientationSequence", "ImageOrientationPatient")
    out["iop"] = tuple(float(v) for v in iop) if iop else None
    thickness = find("PixelMeasuresSequence", "SliceThickness")
    out["slice_thickness"] = float(thickness) if thickness is not None else None
    spacing = find("PixelMeasuresSequence", "PixelSpacing")
    out["pixel_spacing"] = tuple(float(v) for v in spacing) if spacing else None
    kernel = find("CTReconstructionSequence", "ConvolutionKernel")
    if kernel is not None:
        out["kernel"] = "\\".join(kernel) if not isinstance(kernel, str) else kernel
    ipps = []
    for frame in frames:
        ipp = find("PlanePositionSequence", "ImagePositionPatient", frame)
        if ipp is None:
            ipps = []
            break
        ipps.append(tuple(float(v) for v in ipp))
    out["ipps"] = ipps
    return out


def _pixel_status(fp: IO[bytes], end: int, size: int, little: bool, implicit: bool) -> str:
    """'ok', 'missing' or 'truncated' for the element that starts at ``end``."""
    fp.seek(end)
    head = fp.read(12)
    if len(head) < 8:
        return "missing"
    fmt = "<" if little else ">"
    group, elem = struct.unpack(fmt + "HH", head[:4])
    if (group, elem) not in _PIXEL_TAGS:
        return "missing"
    if implicit:
        (length,), header = struct.unpack(fmt + "I", head[4:8]), 8
    else:
        if len(head) < 12:
            return "truncated"
        (length,), header = struct.unpack(fmt + "I", head[8:12]), 12
    if length == 0:
        return "missing"
    if length == 0xFFFFFFFF:  # encapsulated: at least the offset table item header
        return "ok" if size >= end + header + 8 else "truncated"
    return "ok" if end + header + length <= size else "truncated"


def _last_value_short(ds: pydicom.Dataset) -> bool:
    """True when the dataset's last element holds fewer bytes than its length says."""
    if not len(ds):
        return False
    last = ds.get_item(max(ds.keys()))
    value = getattr(last, "value", None)
    length = getattr(last, "length", None)
    return isinstance(value, bytes) and length not in (None, 0xFFFFFFFF) and len(value) < length


def _raw_text(values: dict[int, bytes], tag: int) -> str:
    value = values.get(tag)
    return value.decode("ascii").strip(" \x00") if value else ""


def _raw_ushort(values: dict[int, bytes], tag: int) -> int | None:
    value = values.get(tag)
    return struct.unpack("<H", value[:2])[0] if value is not None and len(value) >= 2 else None


def read_dicom(entry: FileEntry, fp: IO[bytes], source: str) -> InstanceRecord | Unreadable:
    """Parse the header of one DICOM object from an open binary file.

    Plain files take the fast path (:func:`engine.dicom_raw.scan_header`); the rest,
    damaged ones included, are parsed by pydicom. Both end in the same checks.

    Parameters
    ----------
    entry : FileEntry
        Where the bytes come from (path, size in bytes, mtime in ns).
    fp : binary file
        Positioned at 0; seekable.
    source : str
        ``dicom`` or ``zip``, recorded on the instance.
    """
    size = entry.size
    if size == 0:
        return _bad(entry, "empty_file", "It has 0 bytes.")
    raw = scan_header(fp, size, _TEXT_TAGS, _BINARY_TAGS)
    if raw is not None:
        values = raw.values
        return _interpret(
            entry,
            fp,
            source,
            text=lambda tag: _raw_text(values, tag),
            ushort=lambda tag: _raw_ushort(values, tag),
            meta_sop_class=raw.meta_sop_class,
            encoding=(raw.implicit, True),
            end=raw.pixel_offset,
        )
    fp.seek(0)
    head = fp.read(132)
    fp.seek(0)
    magic = len(head) == 132 and head[128:] == b"DICM"
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=not magic)
    except InvalidDicomError:
        return _bad(entry, "not_dicom", "It has no DICOM file header ('DICM' marker).")
    except Exception as exc:  # pydicom raises many types on damaged input
        if magic:
            return _bad(
                entry,
                "truncated" if isinstance(exc, EOFError) else "bad_header",
                f"pydicom: {type(exc).__name__}: {str(exc)[:200]}",
            )
        return _bad(entry, "not_dicom", "It has no DICOM file header ('DICM' marker).")
    end = fp.tell()
    meta = getattr(ds, "file_meta", None)
    implicit, little = ds.original_encoding
    little = True if little is None else little
    return _interpret(
        entry,
        fp,
        source,
        text=lambda tag: _text(ds, tag),
        ushort=lambda tag: _ushort(ds, tag, little),
        meta_sop_class=str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else "",
        encoding=(bool(implicit), little),
        end=end,
        ds=ds,
        magic=magic,
    )


@functools.lru_cache(maxsize=256)
def _uid_name(uid: str) -> str:
    return UID(uid).name if uid else ""


@functools.lru_cache(maxsize=4096)
def _date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _interpret(
    entry: FileEntry,
    fp: IO[bytes],
    source: str,
    *,
    text: Callable[[int], str],
    ushort: Callable[[int], int | None],
    meta_sop_class: str,
    encoding: tuple[bool, bool],
    end: int,
    ds: pydicom.Dataset | None = None,
    magic: bool = True,
) -> InstanceRecord | Unreadable:
    """Checks and record shared by both parsers; ``ds`` is pydicom's data set, if used.

    ``end`` is the offset where parsing stopped (the pixel data element, or the file's
    end); ``encoding`` is (implicit VR, little endian).
    """
    size = entry.size
    sop_class = text(_T["sop_class"]) or meta_sop_class
    if sop_class == _DICOMDIR_CLASS:
        return _bad(entry, "dicomdir", "It lists files of the archive; they are indexed directly.")
    sop_uid, series_uid = text(_T["sop_uid"]), text(_T["series_uid"])
    study_uid = text(_T["study_uid"])
    if not magic and not (_UID_RE.match(sop_uid) and _UID_RE.match(series_uid)):
        return _bad(entry, "not_dicom", "It has no DICOM file header ('DICM' marker).")
    at_eof = end >= size  # parsing stopped at the end of the file, not at pixel data
    if ds is not None and at_eof and _last_value_short(ds):
        return _bad(entry, "truncated", f"The file has {size} bytes; its data runs past them.")
    missing = [
        n
        for n, v in (
            ("SOPInstanceUID", sop_uid),
            ("SeriesInstanceUID", series_uid),
            ("StudyInstanceUID", study_uid),
        )
        if not v
    ]
    if missing and at_eof:
        # the header stops at the end of the file before the identifiers every instance
        # has: a file cut short (at an element boundary, so no value was cut mid-way;
        # either parser, the raw one included: it stops at the file's end just the same)
        return _bad(entry, "truncated", f"The file ends ({size} bytes) before its {missing[0]}.")
    if missing:
        return _bad(entry, "bad_header", f"It lacks {', '.join(missing)}, needed to group it.")
    implicit, little = encoding
    name = _uid_name(sop_class)
    rows = ushort(_T["rows"])
    is_image = "Image Storage" in name or (name == sop_class and rows is not None)
    if is_image:
        meta = getattr(ds, "file_meta", None) if ds is not None else None
        syntax = _text(meta, 0x00020010) if meta is not None else ""
        if syntax == DeflatedExplicitVRLittleEndian:
            status = "ok" if "PixelData" in pydicom.dcmread(fp, force=True) else "missing"
        else:
            status = _pixel_status(fp, end, size, little, implicit)
        if status == "truncated":
            return _bad(entry, "truncated", f"The file has {size} bytes; its data runs past them.")
        if status == "missing":
            return _bad(
                entry,
                "no_pixel_data",
                f"It is a {name or 'image'} object without its pixel data element.",
            )

    iop = _floats(text(_T["iop"]))
    ipp = _floats(text(_T["ipp"]))
    thickness = _floats(text(_T["slice_thickness"]))
    spacing = _floats(text(_T["pixel_spacing"]))
    kernel = text(_T["kernel"])
    frames = _int(text(_T["frames"])) or 1
    ipps = [ipp] if ipp and len(ipp) == 3 else []
    if ds is not None and (
        ds.get_item(0x52009230) is not None or ds.get_item(0x52009229) is not None
    ):
        geo = _enhanced(ds)
        iop = iop or geo["iop"]
        thickness = thickness or ((geo["slice_thickness"],) if geo["slice_thickness"] else None)
        spacing = spacing or geo["pixel_spacing"]
        kernel = kernel or geo.get("kernel", "")
        ipps = geo["ipps"] or ipps
    if iop is not None and len(iop) != 6:
        iop = None
    positions: tuple[float, ...] = ()
    if iop is not None and ipps:
        normal = _normal(iop)
        positions = tuple(_along(normal, p) for p in ipps)
    return InstanceRecord(
        path=entry.path,
        size=size,
        mtime_ns=entry.mtime_ns,
        source=source,
        sop_uid=sop_uid,
        sop_class_uid=sop_class,
        series_uid=series_uid,
        study_uid=study_uid,
        patient_id=text(_T["patient_id"]),
        study_date=_date(text(_T["study_date"])),
        series_number=_int(text(_T["series_number"])),
        instance_number=_int(text(_T["instance_number"])),
        modality=text(_T["modality"]).upper(),
        manufacturer=text(_T["manufacturer"]),
        model=text(_T["model"]),
        institution=text(_T["institution"]),
        kernel=kernel,
        image_type=text(_T["image_type"]).upper(),
        series_description=text(_T["series_description"]),
        body_part=text(_T["body_part"]),
        orientation=iop,
        ipp=ipps[0] if ipps else None,
        positions=positions,
        slice_thickness=thickness[0] if thickness else None,
        pixel_spacing=spacing,
        rows=rows,
        columns=ushort(_T["columns"]),
        frames=frames,
        is_image=is_image,
    )


def read_entry(
    entry: FileEntry, root: str, zips: dict[str, zipfile.ZipFile] | None = None
) -> InstanceRecord | Unreadable:
    """Read one walk entry; never raises for bad input (it becomes ``Unreadable``).

    Parameters
    ----------
    entry : FileEntry
        From :func:`engine.index.walk.discover`.
    root : str
        The archive folder (NIfTI identifiers may come from the path below it).
    zips : dict, optional
        Open zip files by path, reused across a chunk; closed by the caller.
    """
    try:
        if entry.kind == "dicomdir":
            return _bad(
                entry, "dicomdir", "It lists files of the archive; they are indexed directly."
            )
        if entry.kind == "bad_zip":
            return _bad(entry, "bad_zip", f"zipfile: {entry.note}")
        if entry.kind == "nifti":
            from engine.index.nifti import read_nifti

            return read_nifti(entry, root)
        if entry.kind == "zip_member":
            zip_path, member = entry.path.split(ZIP_SEPARATOR, 1)
            zips = {} if zips is None else zips
            if zip_path not in zips:
                zips[zip_path] = zipfile.ZipFile(zip_path)
            data = zips[zip_path].read(member)
            return read_dicom(entry, io.BytesIO(data), "zip")
        with open(entry.path, "rb") as fp:
            return read_dicom(entry, fp, "dicom")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError) as exc:
        return _bad(entry, "bad_zip", f"zipfile: {exc}")
    except OSError as exc:
        return _bad(entry, "not_dicom", f"It could not be read: {exc.strerror or exc}.")
    except Exception as exc:  # a bad file never stops the run
        return _bad(entry, "bad_header", f"{type(exc).__name__}: {str(exc)[:200]}")


def read_chunk(task: tuple[list[FileEntry], str]) -> list[InstanceRecord | Unreadable]:
    """Worker entry point: read a chunk of entries (zip files opened once per chunk)."""
    entries, root = task
    zips: dict[str, zipfile.ZipFile] = {}
    try:
        return [read_entry(e, root, zips) for e in entries]
    finally:
        for zf in zips.values():
            zf.close()
