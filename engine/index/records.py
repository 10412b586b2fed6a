"""Typed records passed between the indexer's stages.

``FileEntry`` (walk) -> ``InstanceRecord`` or ``Unreadable`` (headers) -> ``SeriesRecord``
(series summary, then eligibility and selection). All are frozen dataclasses; none holds a
direct patient identifier (no PatientName, no birth date): PatientID is the only key kept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["FileEntry", "InstanceRecord", "SeriesRecord", "Unreadable"]

#: Separator between a zip archive's path and a member's path inside it.


@dataclass(frozen=True)
class FileEntry:
    """One thing to index, found by the walk.

    Attributes
    ----------
    path : str
        Absolute path; a zip member is ``/abs/archive.zip!member/path``.
    size : int
        Bytes (a zip member: its uncompressed size; a NIfTI: plus its JSON sidecar's).
    mtime_ns : int
        Modification time in ns (a zip member: the zip file's; a NIfTI: the later of the
        volume's and its sidecar's).
    kind : str
        ``dicom`` (any other file), ``zip_member``, ``nifti``, ``dicomdir`` or ``bad_zip``.
    note : str
        Detail for ``bad_zip`` (why the zip could not be opened).
    """

    path: str
    size: int
    mtime_ns: int
    kind: str = "dicom"
    note: str = ""


@dataclass(frozen=True)
class Unreadable:
    """A file that is not an indexable image object, with its reason code and sentence."""

    path: str
    size: int
    mtime_ns: int
    reason_code: str
    reason: str


@dataclass(frozen=True)
class InstanceRecord:
    """Header facts of one DICOM instance (or one NIfTI volume), no pixels.

    Geometry is DICOM patient coordinates (LPS, mm). ``positions`` holds the position of
    every frame along the image plane normal (shape (frames,), mm; empty without
    orientation); ``ipp`` is the first frame's ImagePositionPatient.
    """

    path: str
    size: int
    mtime_ns: int
    source: str
    sop_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    patient_id: str
    study_date: dt.date | None
    series_number: int | None
    instance_number: int | None
    modality: str
    manufacturer: str
    model: str
    institution: str
    kernel: str
    image_type: str
    series_description: str
    body_part: str
    orientation: tuple[float, ...] | None
    ipp: tuple[float, ...] | None
    positions: tuple[float, ...]
    slice_thickness: float | None
    pixel_spacing: tuple[float, ...] | None
    rows: int | None
    columns: int | None
    frames: int
    is_image: bool


@dataclass(frozen=True)
class SeriesRecord:
    """Summary of one series, then its eligibility and selection decision.

    Lengths are mm. ``n_slices`` counts frames (an Enhanced CT file counts NumberOfFrames);
    ``z_extent_mm`` is the distance between the outermost slice positions along the plane
    normal; ``max_gap_mm`` the largest distance between neighbouring positions.
    ``reason_code``/``reason`` are None exactly when ``selected``.
    """

    series_uid: str
    study_uid: str
    patient_id: str
    study_date: dt.date | None
    series_number: int | None
    series_description: str
    modality: str
    sop_class_uid: str
    institution: str
    manufacturer: str
    model: str
    kernel: str
    image_type: str
    body_part: str
    source: str
    is_image: bool
    orientation: str
    axial_angle_deg: float | None
    slice_thickness: float | None
    slice_spacing_mm: float | None
    max_gap_mm: float | None
    pixel_spacing: tuple[float, ...] | None
    rows: int | None
    columns: int | None
    n_instances: int
    n_duplicates: int
    n_slices: int
    z_extent_mm: float | None
    mixed_sizes: str
    content_hash: str
    kernel_class: str = "unknown"
    eligible: bool = False
    selected: bool = False
    reason_code: str | None = None
    reason: str | None = None
    indexed_at: dt.datetime | None = None
