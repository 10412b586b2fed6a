"""Summarize the instances of one series into a ``SeriesRecord`` (pure, no I/O).

Duplicate copies of one SOP instance (the same SOPInstanceUID in several files, common in
merged archives) count once: the copy with the first path is kept. Header values that
should be shared by the series (modality, kernel, ...) are taken from the first instance
in (InstanceNumber, path) order; sizes and orientations are compared across all of them
(``mixed_sizes`` names what differs).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from engine.dicom_geometry import axial_angle_deg, slice_normal
from engine.index.records import InstanceRecord, SeriesRecord

__all__ = ["content_hash", "orientation_label", "summarize"]

#: Positions closer than this (mm) are one slice position (duplicates, not a gap).
_SAME_POSITION_MM = 0.01
#: Direction cosines differing by more than this disagree (about 0.6 degrees).
_IOP_TOLERANCE = 0.01
#: An image plane within this angle (degrees) of a patient axis is named after it.
_PLANE_TOLERANCE_DEG = 45.0


def content_hash(instances: Sequence[InstanceRecord]) -> str:
    """SHA-256 (hex, 32 chars) over the sorted ``(sop_uid, size, mtime_ns)`` of a series.

    Adding, removing or replacing (rewriting or touching) any instance changes it.
    """
    lines = sorted(f"{r.sop_uid}|{r.size}|{r.mtime_ns}" for r in instances)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32]


def orientation_label(iop: Sequence[float] | None) -> tuple[str, float | None]:
    """(``axial``/``coronal``/``sagittal``/``unknown``, angle from axial in degrees)."""
    if iop is None:
        return "unknown", None
    try:
        normal = slice_normal(iop)
    except ValueError:
        return "unknown", None
    angle = axial_angle_deg(iop)
    axis = int(abs(normal).argmax())
    return ("sagittal", "coronal", "axial")[axis], angle


def _mode(values: list) -> object:
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def _mixed(records: Sequence[InstanceRecord]) -> str:
    """Words naming what disagrees between the images of a series ('' when nothing)."""
    images = [r for r in records if r.is_image]
    problems = []
    sizes = sorted({(r.rows, r.columns) for r in images})
    if len(sizes) > 1:
        problems.append("image sizes " + ", ".join(f"{a}x{b}" for a, b in sizes[:4]))
    spacings = {tuple(round(v, 3) for v in r.pixel_spacing) for r in images if r.pixel_spacing}
    if len(spacings) > 1:
        problems.append("pixel spacings " + ", ".join("/".join(map(str, s)) for s in spacings))
    iops = [r.orientation for r in images if r.orientation is not None]
    if iops and any(
        max(abs(a - b) for a, b in zip(iop, iops[0], strict=True)) > _IOP_TOLERANCE for iop in iops
    ):
        problems.append("image orientations")
    return "; ".join(problems)


def summarize(instances: Sequence[InstanceRecord]) -> SeriesRecord:
    """The geometry and header summary of one series (eligibility not yet decided).

    Parameters
    ----------
    instances : sequence of InstanceRecord
        All instances of one SeriesInstanceUID (at least one).
    """
    if not instances:
        raise ValueError("a series needs at least one instance")
    by_sop: dict[str, InstanceRecord] = {}
    for r in sorted(instances, key=lambda r: r.path):
        by_sop.setdefault(r.sop_uid, r)
    records = sorted(by_sop.values(), key=lambda r: (r.instance_number or 0, r.path))
    first = records[0]
    positions = sorted(p for r in records for p in r.positions)
    unique: list[float] = []
    for p in positions:
        if not unique or p - unique[-1] > _SAME_POSITION_MM:
            unique.append(p)
    gaps = [b - a for a, b in zip(unique, unique[1:], strict=False)]
    gaps_sorted = sorted(gaps)
    spacing = gaps_sorted[len(gaps_sorted) // 2] if gaps_sorted else None
    iop = _mode([r.orientation for r in records])
    label, angle = orientation_label(iop)  # type: ignore[arg-type]
    thickness = _mode([r.slice_thickness for r in records])
    rows_cols = _mode([(r.rows, r.columns) for r in records if r.rows is not None])
    return SeriesRecord(
        series_uid=first.series_uid,
        study_uid=first.study_uid,
        patient_id=first.patient_id,
        study_date=first.study_date,
        series_number=first.series_number,
        series_description=first.series_description,
        modality=first.modality,
        sop_class_uid=first.sop_class_uid,
        institution=first.institution,
        manufacturer=first.manufacturer,
        model=first.model,
        kernel=first.kernel,
        image_type=first.image_type,
        body_part=first.body_part,
        source=first.source,
        is_image=any(r.is_image for r in records),
        orientation=label,
        axial_angle_deg=None if angle is None else round(angle, 3),
        slice_thickness=thickness,  # type: ignore[arg-type]
        slice_spacing_mm=None if spacing is None else round(spacing, 4),
        max_gap_mm=round(max(gaps), 4) if gaps else None,
        pixel_spacing=_mode([r.pixel_spacing for r in records]),  # type: ignore[arg-type]
        rows=rows_cols[0] if rows_cols else None,  # type: ignore[index]
        columns=rows_cols[1] if rows_cols else None,  # type: ignore[index]
        n_instances=len(records),
        n_duplicates=len(instances) - len(records),
        n_slices=sum(r.frames for r in records if r.is_image),
        z_extent_mm=round(unique[-1] - unique[0], 4) if unique else None,
        mixed_sizes=_mixed(records),
        content_hash=content_hash(instances),
    )
