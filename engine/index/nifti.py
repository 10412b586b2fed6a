"""Index a NIfTI volume (``.nii`` / ``.nii.gz``) as one series of one instance.

Identifiers, first found wins:

1. a JSON sidecar with the same name (``scan.nii.gz`` -> ``scan.json``, as dcm2niix writes
   them) with any of ``PatientID``, ``StudyInstanceUID``, ``StudyDate``,
   ``SeriesInstanceUID``, ``SeriesNumber``, ``SeriesDescription``, ``Modality``,
   ``Manufacturer``, ``ManufacturerModelName``, ``InstitutionName``,
   ``ConvolutionKernel``, ``ImageType``, ``SliceThickness`` (other keys, such as a
   patient name, are ignored and never stored);
2. the path below the archive folder: ``PATIENT_ID/STUDY/scan.nii.gz`` gives PatientID
   ``PATIENT_ID`` and a study UID derived from ``PATIENT_ID/STUDY`` (so volumes in one
   folder share a study; a ``STUDY`` folder name starting ``YYYYMMDD`` gives the study
   date); ``PATIENT_ID/scan.nii.gz`` gives a study per file; a file directly in the
   archive folder uses its own name for both.

UIDs not given are derived deterministically from the path (``2.25``-style UIDs from
``pydicom.uid.generate_uid`` with the path as entropy). NIfTI carries no modality: a
volume is taken as CT unless its sidecar says otherwise. Only the header is read
(``SimpleITK.ImageFileReader.ReadImageInformation``); geometry is converted to DICOM LPS.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from engine.errors import reason
from engine.index.records import FileEntry, InstanceRecord, Unreadable
from engine.index.walk import nifti_sidecar

__all__ = ["read_nifti"]

_DATE_RE = re.compile(r"^(\d{8})")


def _uid(*parts: str) -> str:
    return generate_uid(prefix=None, entropy_srcs=list(parts))


def _date(text: Any) -> dt.date | None:
    match = _DATE_RE.match(str(text or "").replace("-", ""))
    if not match:
        return None
    try:
        return dt.datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        return None


def _ids_from_path(path: str, root: str) -> tuple[str, str, dt.date | None]:
    """(patient_id, study_key, study_date) from ``.../PATIENT_ID/STUDY/file.nii.gz``."""
    p = Path(path)
    try:
        parts = p.relative_to(root).parts
    except ValueError:
        parts = p.parts[-3:]
    stem = p.name[: -len(".nii.gz")] if p.name.lower().endswith(".gz") else p.stem
    if len(parts) >= 3:
        return parts[-3], f"{parts[-3]}/{parts[-2]}", _date(parts[-2])
    if len(parts) == 2:
        return parts[0], f"{parts[0]}/{stem}", None
    return stem, stem, None


def _sidecar(path: str) -> dict[str, Any]:
    side = Path(nifti_sidecar(path))
    if not side.is_file():
        return {}
    data = json.loads(side.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _str(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def read_nifti(entry: FileEntry, root: str) -> InstanceRecord | Unreadable:
    """Read a NIfTI volume's header (and sidecar) into one ``InstanceRecord``.

    ``frames`` is the number of slices (third axis); ``positions`` their positions along
    the plane normal (mm, LPS).
    """
    import SimpleITK as sitk

    try:
        meta = _sidecar(entry.path)
    except (OSError, ValueError) as exc:
        return Unreadable(
            entry.path,
            entry.size,
            entry.mtime_ns,
            "bad_nifti",
            f"{reason('bad_nifti')} Its JSON sidecar is unreadable: {exc}",
        )
    reader = sitk.ImageFileReader()
    reader.SetFileName(entry.path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "unreadable"
        return Unreadable(
            entry.path,
            entry.size,
            entry.mtime_ns,
            "bad_nifti",
            f"{reason('bad_nifti')} SimpleITK: {detail}",
        )
    size = reader.GetSize()
    if len(size) < 3:
        return Unreadable(
            entry.path,
            entry.size,
            entry.mtime_ns,
            "bad_nifti",
            f"{reason('bad_nifti')} It is {len(size)}-D, not a 3-D volume.",
        )
    spacing = reader.GetSpacing()
    origin = reader.GetOrigin()
    d = reader.GetDirection()  # row-major 3x3; column k = direction of image axis k (LPS)
    cols = [(d[0 + k], d[3 + k], d[6 + k]) for k in range(3)]
    iop = tuple(float(v) for v in (*cols[0], *cols[1]))
    r, c = cols[0], cols[1]
    normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    step = sum(n * a for n, a in zip(normal, cols[2], strict=True)) * spacing[2]
    base = sum(n * o for n, o in zip(normal, origin, strict=True))
    positions = tuple(float(base + k * step) for k in range(size[2]))

    patient, study_key, path_date = _ids_from_path(entry.path, root)
    patient = _str(meta, "PatientID") or patient
    thickness = meta.get("SliceThickness")
    return InstanceRecord(
        path=entry.path,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        source="nifti",
        sop_uid=_str(meta, "SOPInstanceUID") or _uid("nifti-instance", entry.path),
        sop_class_uid="",
        series_uid=_str(meta, "SeriesInstanceUID") or _uid("nifti-series", entry.path),
        study_uid=_str(meta, "StudyInstanceUID") or _uid("nifti-study", study_key),
        patient_id=patient,
        study_date=_date(meta.get("StudyDate")) or path_date,
        series_number=int(meta["SeriesNumber"])
        if str(meta.get("SeriesNumber", "")).isdigit()
        else None,
        instance_number=1,
        modality=(_str(meta, "Modality") or "CT").upper(),
        manufacturer=_str(meta, "Manufacturer"),
        model=_str(meta, "ManufacturerModelName"),
        institution=_str(meta, "InstitutionName"),
        kernel=_str(meta, "ConvolutionKernel"),
        image_type=_str(meta, "ImageType").upper(),
        series_description=_str(meta, "SeriesDescription"),
        body_part=_str(meta, "BodyPartExamined"),
        orientation=iop,
        ipp=tuple(float(v) for v in origin),
        positions=positions,
        slice_thickness=float(thickness) if isinstance(thickness, int | float) else spacing[2],
        pixel_spacing=(float(spacing[1]), float(spacing[0])),
        rows=int(size[1]),
        columns=int(size[0]),
        frames=int(size[2]),
        is_image=True,
    )
