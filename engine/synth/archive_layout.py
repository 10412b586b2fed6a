"""Where the synthetic archive puts each DICOM file: one folder scheme per site profile.

Real archives differ in how they nest and name files, and an indexer must not rely on
any of it. Three schemes are modelled (``SiteProfile.layout``):

``patient_study_series``
    ``PATIENT/STUDY/SERIES/IM####`` with no file suffix, as many PACS exports do.
``dated_accession``
    ``YYYY/MM/ACCESSION/SERIESNUMBER/N.dcm``, as a research export sorted by date.
``flat_uid``
    ``PATIENT/<SOPInstanceUID>.dcm``, every object of a patient in one folder.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from pathlib import Path

from engine.errors import VfriskError

__all__ = ["LAYOUTS", "ensure_free", "instance_path"]

LAYOUTS = ("patient_study_series", "dated_accession", "flat_uid")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(name: str) -> str:
    """A file-system safe folder name: runs of other characters become ``_``."""
    cleaned = _UNSAFE.sub("_", name.strip()).strip("._")
    return cleaned or "UNKNOWN"


def instance_path(
    root: Path,
    layout: str,
    *,
    patient_id: str,
    study_date: datetime.date,
    accession: str,
    series_number: int,
    instance_number: int,
    sop_instance_uid: str,
) -> Path:
    """Absolute path of one DICOM instance in the archive folder ``root``.

    Parameters
    ----------
    root : Path
        The archive folder.
    layout : str
        One of ``LAYOUTS`` (see the module docstring).
    patient_id, accession : str
        PatientID and AccessionNumber of the study; made file-system safe.
    study_date : datetime.date
        StudyDate; gives the ``YYYY/MM`` folders of ``dated_accession``.
    series_number, instance_number : int
        SeriesNumber and InstanceNumber of the object.
    sop_instance_uid : str
        SOPInstanceUID; the file name of ``flat_uid``.

    Returns
    -------
    Path
        An absolute path; its folders are not created here.
    """
    root = Path(root).resolve()
    if layout == "patient_study_series":
        study = f"{study_date:%Y%m%d}_{_safe(accession)}"
        return (
            root / _safe(patient_id) / study / f"SE{series_number:04d}" / f"IM{instance_number:04d}"
        )
    if layout == "dated_accession":
        return (
            root
            / f"{study_date:%Y}"
            / f"{study_date:%m}"
            / _safe(accession)
            / str(series_number)
            / f"{instance_number}.dcm"
        )
    if layout == "flat_uid":
        return root / _safe(patient_id) / f"{sop_instance_uid}.dcm"
    raise VfriskError("bad_profile", f"unknown archive layout {layout!r}; use one of {LAYOUTS}")


def ensure_free(paths: Iterable[Path]) -> None:
    """Refuse to overwrite: raise ``VfriskError('output_exists')`` if any path exists.

    Checked for a whole series before its first file is written, so that a clash leaves
    no half-written series behind.
    """
    for path in paths:
        if path.exists():
            raise VfriskError(
                "output_exists",
                f"{path} already exists; write the synthetic archive to an empty folder "
                "or remove the old one first",
            )
