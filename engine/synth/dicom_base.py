"""Shared building blocks of the synthetic DICOM objects: records, UIDs, pixel storage.

``dicom_writer`` (CT images) and ``dicom_documents`` (dose screen, SR) build every object
from :func:`base_dataset`. Nothing depends on the clock or on random state: UIDs are hashes
of their parts (:func:`make_uid`) and times are derived from the study, so the same inputs
give byte-identical files. Everything written is synthetic.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from engine.errors import VfriskError
from engine.synth.archive_layout import ensure_free, instance_path
from engine.synth.profiles import SiteProfile

__all__ = [
    "KVP",
    "RESCALE_SLOPE",
    "StudyInfo",
    "WrittenSeries",
    "age_string",
    "base_dataset",
    "clock",
    "format_ds",
    "hu_to_stored",
    "make_uid",
    "series_offset_s",
    "series_paths",
    "set_pixels",
    "stored_range",
    "stored_to_hu",
    "transfer_syntax",
    "write_instance",
]

RESCALE_SLOPE = 1.0
KVP = "120"
_IMPLEMENTATION_VERSION = "VFRISK_SYNTH_1"
_COMPRESSED = {
    "JPEG2000Lossless": UID("1.2.840.10008.1.2.4.90"),
    "RLELossless": UID("1.2.840.10008.1.2.5"),
}
_UNCOMPRESSED = {
    "ExplicitVRLittleEndian": ExplicitVRLittleEndian,
    "ImplicitVRLittleEndian": UID("1.2.840.10008.1.2"),
}


@dataclass(frozen=True)
class StudyInfo:
    """Identity of one synthetic study, shared by all its series.

    Attributes
    ----------
    patient_id, patient_name : str
        PatientID and PatientName (``FAMILY^GIVEN``).
    birth_date : datetime.date
        PatientBirthDate; PatientAge is derived from it and ``study_date``.
    sex : str
        ``'F'`` or ``'M'``.
    study_uid : str
        StudyInstanceUID.
    study_date : datetime.date
        StudyDate; every date and time of the study derives from it.
    accession : str
        AccessionNumber (at most 16 characters).
    contrast : bool
        Whether the axial series were acquired after IV contrast.
    frame_of_reference_uid : str
        FrameOfReferenceUID shared by the study's CT images.
    """

    patient_id: str
    patient_name: str
    birth_date: datetime.date
    sex: str
    study_uid: str
    study_date: datetime.date
    accession: str
    contrast: bool
    frame_of_reference_uid: str


@dataclass(frozen=True)
class WrittenSeries:
    """One series as written: identity plus the absolute paths of its files.

    ``kind`` is ``'axial'``, ``'localizer'``, ``'reformat'``, ``'secondary_capture'`` or
    ``'sr'``; ``paths`` are in InstanceNumber order (1, 2, ...).
    """

    series_uid: str
    series_number: int
    kind: str
    description: str
    kernel: str | None
    paths: tuple[Path, ...]


def make_uid(*parts: object) -> str:
    """A deterministic DICOM UID: the same parts always give the same UID.

    The UID is pydicom's root prefix plus a SHA-512 hash of ``str()`` of every part
    (``pydicom.uid.generate_uid(prefix, entropy_srcs)``), at most 64 characters.
    """
    return str(generate_uid(entropy_srcs=["vfrisk", *(str(p) for p in parts)]))


def stored_range(profile: SiteProfile) -> tuple[int, int]:
    """Inclusive range ``(lo, hi)`` of stored values an image pixel may take.

    Unsigned profiles store 12 bits (0..4095), signed ones 16 bits (-32768..32767). When
    the profile has a PixelPaddingValue inside that range and below every image value
    (as GE -2000 and Canon -3024 are), the range starts just above it, so that no tissue
    pixel is ever mistaken for padding (PS3.3 C.7.5.1.1.2).
    """
    lo, hi = (0, 4095) if profile.pixel_representation == 0 else (-32768, 32767)
    pad = profile.pixel_padding_value
    if pad is not None and lo <= pad < hi:
        lo = max(lo, pad + 1)
    return lo, hi


def hu_to_stored(hu: np.ndarray, profile: SiteProfile) -> np.ndarray:
    """Stored pixel values of HU values under a profile's rescale.

    Parameters
    ----------
    hu : np.ndarray
        Finite values in HU, any shape.
    profile : SiteProfile
        Gives RescaleIntercept (slope is 1) and the pixel representation.

    Returns
    -------
    np.ndarray
        Same shape; ``round((hu - intercept) / slope)`` clipped to :func:`stored_range`,
        dtype ``uint16`` (unsigned profiles) or ``int16`` (signed).
    """
    lo, hi = stored_range(profile)
    hu = np.asarray(hu)
    # float32 input stays float32 (exact for |HU| < 2**23 / 2, and twice as fast)
    work = hu.astype(np.float32 if hu.dtype == np.float32 else np.float64)
    work -= profile.rescale_intercept
    if RESCALE_SLOPE != 1.0:
        work /= RESCALE_SLOPE
    np.rint(work, out=work)
    np.clip(work, lo, hi, out=work)
    return work.astype(np.uint16 if profile.pixel_representation == 0 else np.int16)


def stored_to_hu(stored: np.ndarray, profile: SiteProfile) -> np.ndarray:
    """HU values (float32, same shape) of stored pixel values: ``stored * slope + intercept``."""
    return (
        np.asarray(stored, dtype=np.float32) * RESCALE_SLOPE + profile.rescale_intercept
    ).astype(np.float32)


def format_ds(value: float) -> str:
    """A decimal string (DS, at most 16 characters) of a value rounded to 1e-6."""
    value = round(float(value), 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    return format_number_as_ds(value)


def clock(study: StudyInfo, offset_s: int = 0) -> str:
    """A DICOM TM ``HHMMSS``: the study start (07:00-18:59, from the UID) plus an offset."""
    digest = int.from_bytes(hashlib.sha256(study.study_uid.encode()).digest()[:4], "big")
    start = 7 * 3600 + digest % (12 * 3600)
    t = min(start + offset_s, 24 * 3600 - 1)
    return f"{t // 3600:02d}{t // 60 % 60:02d}{t % 60:02d}"


def series_offset_s(series_number: int) -> int:
    """Seconds from study start to a series (two minutes per number, within two hours)."""
    return 120 * (series_number % 60)


def age_string(study: StudyInfo) -> str:
    """PatientAge (AS, ``nnnY``) on the study date."""
    b, s = study.birth_date, study.study_date
    years = s.year - b.year - ((s.month, s.day) < (b.month, b.day))
    return f"{max(years, 0):03d}Y"


def transfer_syntax(profile: SiteProfile, *, has_pixels: bool = True) -> UID:
    """The profile's transfer syntax; non-image objects of compressing sites use explicit LE."""
    if profile.transfer_syntax in _COMPRESSED:
        return _COMPRESSED[profile.transfer_syntax] if has_pixels else ExplicitVRLittleEndian
    return _UNCOMPRESSED[profile.transfer_syntax]


def base_dataset(
    study: StudyInfo,
    profile: SiteProfile,
    *,
    sop_class: str,
    series_uid: str,
    series_number: int,
    modality: str,
    description: str,
    has_pixels: bool = True,
) -> Dataset:
    """Patient, General Study, Patient Study, General Series, General Equipment, SOP Common."""
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = transfer_syntax(profile, has_pixels=has_pixels)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    ds.file_meta = meta

    date = f"{study.study_date:%Y%m%d}"
    series_time = clock(study, series_offset_s(series_number))
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = series_time
    ds.StudyDate = date
    ds.SeriesDate = date
    ds.StudyTime = clock(study)
    ds.SeriesTime = series_time
    ds.AccessionNumber = study.accession
    ds.Modality = modality
    ds.Manufacturer = profile.manufacturer
    ds.InstitutionName = profile.institution
    ds.ReferringPhysicianName = ""
    ds.StationName = f"CT{profile.name.upper()}01"[:16]
    ds.StudyDescription = "CT ABDOMEN PELVIS" + (" WITH CONTRAST" if study.contrast else "")
    ds.SeriesDescription = description
    ds.ManufacturerModelName = profile.model
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = f"{study.birth_date:%Y%m%d}"
    ds.PatientSex = study.sex
    ds.PatientAge = age_string(study)
    ds.PatientIdentityRemoved = "NO"
    ds.DeviceSerialNumber = str(int(make_uid(profile.name, "device")[-6:]))
    ds.SoftwareVersions = "vfrisk synthetic"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study.accession[-16:] or "1"
    ds.SeriesNumber = series_number
    return ds


def write_instance(ds: Dataset, path: Path, sop_uid: str) -> None:
    """Set the instance UID and write ``ds`` to a new file (never over an existing one)."""
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "xb") as fh:
            pydicom.dcmwrite(fh, ds, enforce_file_format=True)
    except FileExistsError:
        raise VfriskError(
            "output_exists", f"{path} already exists; write to an empty archive folder"
        ) from None


def set_pixels(ds: Dataset, frame: np.ndarray, syntax: UID) -> None:
    """Store one frame (2-D array, dtype matching the Image Pixel module) in ``ds``."""
    if syntax.is_compressed:
        # generate_instance_uid=False: pydicom would otherwise draw a random SOP UID
        ds.compress(syntax, frame, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    else:
        ds.PixelData = frame.tobytes()
        ds["PixelData"].VR = "OW" if frame.dtype.itemsize == 2 else "OB"


def series_paths(
    root: Path, study: StudyInfo, profile: SiteProfile, series_number: int, uids: list[str]
) -> list[Path]:
    """Archive paths of a series' instances (InstanceNumber = position + 1), all free."""
    paths = [
        instance_path(
            root,
            profile.layout,
            patient_id=study.patient_id,
            study_date=study.study_date,
            accession=study.accession,
            series_number=series_number,
            instance_number=n + 1,
            sop_instance_uid=uid,
        )
        for n, uid in enumerate(uids)
    ]
    ensure_free(paths)
    return paths
