"""Write the synthetic cohort's studies as real, valid DICOM files.

Every object is built from a per-series template ``Dataset``; per instance only the
attributes that change (SOPInstanceUID, InstanceNumber, ImagePositionPatient,
SliceLocation, PixelData) are set before ``pydicom.dcmwrite(..., enforce_file_format=True)``.
Nothing depends on the clock or on random state: UIDs are hashes of their parts
(:func:`make_uid`) and times are derived from the study, so the same inputs give
byte-identical files.

Objects written:

* CT Image Storage axial series (PS3.3 A.3), localizer and coronal reformat;
* a Secondary Capture dose screen (PS3.3 A.8.1) with Modality CT, as scanners make them;
* a Basic Text SR (PS3.3 A.35.1) with a short report, Modality SR.

Everything written is synthetic; no real patient data is used anywhere.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from engine.errors import VfriskError
from engine.geometry import Grid
from engine.synth.archive_layout import ensure_free, instance_path
from engine.synth.profiles import SiteProfile

__all__ = [
    "StudyInfo",
    "WrittenSeries",
    "hu_to_stored",
    "make_uid",
    "stored_range",
    "stored_to_hu",
    "write_axial_series",
    "write_coronal_reformat",
    "write_dose_screen",
    "write_localizer",
    "write_text_sr",
]

_RESCALE_SLOPE = 1.0
_KVP = "120"
_IMPLEMENTATION_VERSION = "VFRISK_SYNTH_1"
_COMPRESSED = {
    "JPEG2000Lossless": UID("1.2.840.10008.1.2.4.90"),
    "RLELossless": UID("1.2.840.10008.1.2.5"),
}
_UNCOMPRESSED = {
    "ExplicitVRLittleEndian": ExplicitVRLittleEndian,
    "ImplicitVRLittleEndian": UID("1.2.840.10008.1.2"),
}
_SOFT_WINDOW = ("40", "400")  # centre, width in HU: abdomen soft tissue
_BONE_WINDOW = ("500", "2000")
_LOCALIZER_NAMES = {"SIEMENS": "Topogram  0.6  T20f", "GE MEDICAL SYSTEMS": "Scout"}


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
    if _RESCALE_SLOPE != 1.0:
        work /= _RESCALE_SLOPE
    np.rint(work, out=work)
    np.clip(work, lo, hi, out=work)
    return work.astype(np.uint16 if profile.pixel_representation == 0 else np.int16)


def stored_to_hu(stored: np.ndarray, profile: SiteProfile) -> np.ndarray:
    """HU values (float32, same shape) of stored pixel values: ``stored * slope + intercept``."""
    return (
        np.asarray(stored, dtype=np.float32) * _RESCALE_SLOPE + profile.rescale_intercept
    ).astype(np.float32)


# ---------------------------------------------------------------- shared building blocks


def _ds(value: float) -> str:
    """A decimal string (DS, at most 16 characters) of a value rounded to 1e-6."""
    value = round(float(value), 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    return format_number_as_ds(value)


def _clock(study: StudyInfo, offset_s: int = 0) -> str:
    """A DICOM TM ``HHMMSS``: the study start (07:00-18:59, from the UID) plus an offset."""
    digest = int.from_bytes(hashlib.sha256(study.study_uid.encode()).digest()[:4], "big")
    start = 7 * 3600 + digest % (12 * 3600)
    t = min(start + offset_s, 24 * 3600 - 1)
    return f"{t // 3600:02d}{t // 60 % 60:02d}{t % 60:02d}"


def _series_offset_s(series_number: int) -> int:
    """Seconds from study start to a series (two minutes per number, within two hours)."""
    return 120 * (series_number % 60)


def _age(study: StudyInfo) -> str:
    """PatientAge (AS, ``nnnY``) on the study date."""
    b, s = study.birth_date, study.study_date
    years = s.year - b.year - ((s.month, s.day) < (b.month, b.day))
    return f"{max(years, 0):03d}Y"


def _transfer_syntax(profile: SiteProfile, *, has_pixels: bool = True) -> UID:
    """The profile's transfer syntax; non-image objects of compressing sites use explicit LE."""
    if profile.transfer_syntax in _COMPRESSED:
        return _COMPRESSED[profile.transfer_syntax] if has_pixels else ExplicitVRLittleEndian
    return _UNCOMPRESSED[profile.transfer_syntax]


def _base_dataset(
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
    meta.TransferSyntaxUID = _transfer_syntax(profile, has_pixels=has_pixels)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    ds.file_meta = meta

    date = f"{study.study_date:%Y%m%d}"
    series_time = _clock(study, _series_offset_s(series_number))
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = series_time
    ds.StudyDate = date
    ds.SeriesDate = date
    ds.StudyTime = _clock(study)
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
    ds.PatientAge = _age(study)
    ds.PatientIdentityRemoved = "NO"
    ds.DeviceSerialNumber = str(int(make_uid(profile.name, "device")[-6:]))
    ds.SoftwareVersions = "vfrisk synthetic"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study.accession[-16:] or "1"
    ds.SeriesNumber = series_number
    return ds


def _write(ds: Dataset, path: Path, sop_uid: str) -> None:
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


def _set_pixels(ds: Dataset, frame: np.ndarray, syntax: UID) -> None:
    """Store one frame (2-D array, dtype matching the Image Pixel module) in ``ds``."""
    if syntax.is_compressed:
        # generate_instance_uid=False: pydicom would otherwise draw a random SOP UID
        ds.compress(syntax, frame, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    else:
        ds.PixelData = frame.tobytes()
        ds["PixelData"].VR = "OW" if frame.dtype.itemsize == 2 else "OB"


def _paths(
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


# ----------------------------------------------------------------------------- CT images


def _ct_template(
    study: StudyInfo,
    profile: SiteProfile,
    *,
    series_uid: str,
    series_number: int,
    description: str,
    image_type: list[str],
    shape_rc: tuple[int, int],
    spacing_rc: tuple[float, float],
    orientation: tuple[float, ...],
    thickness_mm: float,
    kernel: str | None,
    window: tuple[str, str],
) -> Dataset:
    """A CT Image Storage dataset with everything but the per-slice attributes set."""
    ds = _base_dataset(
        study,
        profile,
        sop_class=CTImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        modality="CT",
        description=description,
    )
    if ds.file_meta.TransferSyntaxUID == _COMPRESSED["JPEG2000Lossless"] and min(shape_rc) < 32:
        # openjpeg's default 6 resolution levels need >= 32 pixels a side; such small
        # images (thin test volumes) stay uncompressed rather than fail
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    time = ds.SeriesTime
    ds.ImageType = image_type
    ds.ContentDate = ds.SeriesDate
    ds.ContentTime = time
    ds.AcquisitionDate = ds.SeriesDate
    ds.AcquisitionTime = time
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "ABDOMEN"
    ds.SliceThickness = _ds(thickness_mm)
    ds.KVP = _KVP
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    if kernel is not None:
        ds.ConvolutionKernel = kernel
    ds.ImageOrientationPatient = [_ds(v) for v in orientation]
    ds.PixelSpacing = [_ds(spacing_rc[0]), _ds(spacing_rc[1])]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(shape_rc[0]), int(shape_rc[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 12 if profile.pixel_representation == 0 else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = profile.pixel_representation
    if profile.pixel_padding_value is not None:
        vr = "US" if profile.pixel_representation == 0 else "SS"
        ds.add_new(0x00280120, vr, int(profile.pixel_padding_value))
    ds.RescaleIntercept = _ds(profile.rescale_intercept)
    ds.RescaleSlope = _ds(_RESCALE_SLOPE)
    if "LOCALIZER" not in image_type:
        # dciodvfy: RescaleType should not be HU for ORIGINAL LOCALIZER images
        ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = window
    ds.WindowCenterWidthExplanation = "BONE" if window == _BONE_WINDOW else "ABDOMEN"
    if study.contrast:
        # Contrast/Bolus module (PS3.3 C.7.6.4): portal-venous phase, ~70 s after injection
        ds.ContrastBolusAgent = "IOHEXOL 350 MG/ML"
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = "100"
        ds.ContrastBolusStartTime = _clock(study, _series_offset_s(series_number) - 70)
        ds.ContrastBolusIngredient = "IODINE"
        ds.ContrastBolusIngredientConcentration = "350"
    return ds


def _recon_mask(grid: Grid) -> np.ndarray:
    """Pixels outside the reconstruction circle, shape (ny, nx), bool.

    The circle is centred on the image with radius half the field of view's width
    (``nx * dx / 2``, mm), as scanners reconstruct a square inscribing the scan circle.
    """
    _, ny, nx = grid.shape_zyx
    _, dy, dx = grid.spacing_zyx
    y = (np.arange(ny) - (ny - 1) / 2) * dy
    x = (np.arange(nx) - (nx - 1) / 2) * dx
    return (y[:, None] ** 2 + x[None, :] ** 2) > (nx * dx / 2) ** 2


def write_axial_series(
    root: Path,
    study: StudyInfo,
    profile: SiteProfile,
    grid: Grid,
    hu: np.ndarray,
    *,
    series_number: int,
    kernel: str,
    description: str,
    recon_circle: bool,
) -> WrittenSeries:
    """Write an axial CT series, one file per slice, in the profile's instance order.

    Parameters
    ----------
    root : Path
        The archive folder; files go where ``profile.layout`` puts them.
    study : StudyInfo
        Patient and study identity.
    profile : SiteProfile
        Scanner, pixel storage, transfer syntax, instance order and archive layout.
    grid : Grid
        Geometry of ``hu``; slice ``k`` is written with ImagePositionPatient
        ``grid.to_patient((k, 0, 0))`` and IOP ``[1, 0, 0, 0, 1, 0]``.
    hu : np.ndarray
        Volume in HU, shape ``grid.shape_zyx`` = (nz, ny, nx), indexed [k, j, i].
    series_number : int
        SeriesNumber; with the study UID it also determines the SeriesInstanceUID.
    kernel : str
        ConvolutionKernel; the profile's bone kernel gets a bone window, others soft tissue.
    description : str
        SeriesDescription.
    recon_circle : bool
        Set pixels outside the reconstruction circle (see ``_recon_mask``) to the
        profile's PixelPaddingValue, or to the lowest storable value without one.

    Returns
    -------
    WrittenSeries
        With ``kind='axial'``; ``paths[0]`` holds InstanceNumber 1, which is the most
        cranial slice for ``instance_order='head_first'`` and the most caudal otherwise.

    Raises
    ------
    VfriskError
        ``output_exists`` if any target file exists (checked before writing any).
    """
    nz, ny, nx = grid.shape_zyx
    if hu.shape != grid.shape_zyx:
        raise ValueError(f"volume shape {hu.shape} differs from grid shape {grid.shape_zyx}")
    dz, dy, dx = grid.spacing_zyx
    series_uid = make_uid(study.study_uid, "series", series_number)
    window = _BONE_WINDOW if kernel == profile.kernel_bone else _SOFT_WINDOW
    ds = _ct_template(
        study,
        profile,
        series_uid=series_uid,
        series_number=series_number,
        description=description,
        image_type=["ORIGINAL", "PRIMARY", "AXIAL"],
        shape_rc=(ny, nx),
        spacing_rc=(dy, dx),
        orientation=(1, 0, 0, 0, 1, 0),
        thickness_mm=profile.slice_thickness_mm,
        kernel=kernel,
        window=window,
    )
    ds.ReconstructionDiameter = _ds(nx * dx)
    order = range(nz - 1, -1, -1) if profile.instance_order == "head_first" else range(nz)
    slices = list(order)  # slices[n] is the array slice k of InstanceNumber n + 1
    uids = [make_uid(series_uid, n + 1) for n in range(nz)]
    paths = _paths(root, study, profile, series_number, uids)
    outside = _recon_mask(grid) if recon_circle else None
    fill = profile.pixel_padding_value
    if fill is None:
        fill = stored_range(profile)[0]
    syntax = ds.file_meta.TransferSyntaxUID
    for n, (k, uid, path) in enumerate(zip(slices, uids, paths, strict=True)):
        frame = hu_to_stored(hu[k], profile)
        if outside is not None:
            frame[outside] = fill
        x, y, z = grid.to_patient((k, 0, 0))
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [_ds(x), _ds(y), _ds(z)]
        ds.SliceLocation = _ds(z)
        _set_pixels(ds, frame, syntax)
        _write(ds, path, uid)
    return WrittenSeries(series_uid, series_number, "axial", description, kernel, tuple(paths))


def write_localizer(
    root: Path,
    study: StudyInfo,
    profile: SiteProfile,
    image: np.ndarray,
    spacing_rc: tuple[float, float],
    *,
    z_top: float,
    x_left: float,
    series_number: int,
    y_mm: float = 0.0,
    description: str | None = None,
) -> WrittenSeries:
    """Write an AP scout: one CT image, ImageType ORIGINAL\\PRIMARY\\LOCALIZER.

    Parameters
    ----------
    image : np.ndarray
        Projection in HU-like units, shape (rows, cols); row 0 is the most cranial,
        column 0 the patient's right (smallest x).
    spacing_rc : tuple of float
        ``(row spacing along z, column spacing along x)`` in mm.
    z_top, x_left : float
        Patient z and x (mm) of the centre of pixel [0, 0].
    series_number : int
        SeriesNumber.
    y_mm : float, optional
        Patient y (mm) given to the image plane (the table centre by default).
    description : str, optional
        SeriesDescription; defaults to the manufacturer's usual name.

    Returns
    -------
    WrittenSeries
        With ``kind='localizer'`` and one path. IOP is ``[1, 0, 0, 0, 0, -1]``.
    """
    if image.ndim != 2:
        raise ValueError(f"a localizer image must be 2-D (rows, cols), got shape {image.shape}")
    description = description or _LOCALIZER_NAMES.get(profile.manufacturer, "Scanogram")
    series_uid = make_uid(study.study_uid, "series", series_number)
    ds = _ct_template(
        study,
        profile,
        series_uid=series_uid,
        series_number=series_number,
        description=description,
        image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"],
        shape_rc=image.shape,
        spacing_rc=spacing_rc,
        orientation=(1, 0, 0, 0, 0, -1),
        thickness_mm=profile.slice_thickness_mm,
        kernel=None,
        window=("0", "1000"),
    )
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [_ds(x_left), _ds(y_mm), _ds(z_top)]
    uid = make_uid(series_uid, 1)
    (path,) = _paths(root, study, profile, series_number, [uid])
    _set_pixels(ds, hu_to_stored(image, profile), ds.file_meta.TransferSyntaxUID)
    _write(ds, path, uid)
    return WrittenSeries(series_uid, series_number, "localizer", description, None, (path,))


def write_coronal_reformat(
    root: Path,
    study: StudyInfo,
    profile: SiteProfile,
    grid: Grid,
    hu: np.ndarray,
    *,
    series_number: int,
    n_slices: int = 5,
    description: str = "COR MPR",
) -> WrittenSeries:
    """Write a derived coronal reformat: ``n_slices`` planes through the middle of ``hu``.

    Plane ``n`` is the volume row ``j_n`` (nearest-neighbour resampling), the rows ``j_n``
    spread evenly over the central 40 % of the volume's y extent; each image runs
    cranial (row 0) to caudal and patient right (column 0) to left, IOP
    ``[1, 0, 0, 0, 0, -1]``, PixelSpacing ``dz \\ dx``. ImageType is
    DERIVED\\SECONDARY\\REFORMATTED; InstanceNumber 1 is the most anterior plane.
    """
    nz, ny, nx = grid.shape_zyx
    if hu.shape != grid.shape_zyx:
        raise ValueError(f"volume shape {hu.shape} differs from grid shape {grid.shape_zyx}")
    dz, dy, dx = grid.spacing_zyx
    series_uid = make_uid(study.study_uid, "series", series_number)
    ds = _ct_template(
        study,
        profile,
        series_uid=series_uid,
        series_number=series_number,
        description=description,
        image_type=["DERIVED", "SECONDARY", "REFORMATTED"],
        shape_rc=(nz, nx),
        spacing_rc=(dz, dx),
        orientation=(1, 0, 0, 0, 0, -1),
        thickness_mm=dy,
        kernel=None,
        window=_SOFT_WINDOW,
    )
    ds.DerivationDescription = "Coronal multiplanar reformat of the axial series"
    rows = np.unique(np.rint(np.linspace(0.3, 0.7, n_slices) * (ny - 1)).astype(int))
    uids = [make_uid(series_uid, n + 1) for n in range(len(rows))]
    paths = _paths(root, study, profile, series_number, uids)
    syntax = ds.file_meta.TransferSyntaxUID
    for n, (j, uid, path) in enumerate(zip(rows, uids, paths, strict=True)):
        x, y, z = grid.to_patient((nz - 1, int(j), 0))
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [_ds(x), _ds(y), _ds(z)]
        _set_pixels(ds, np.ascontiguousarray(hu_to_stored(hu[::-1, j, :], profile)), syntax)
        _write(ds, path, uid)
    return WrittenSeries(series_uid, series_number, "reformat", description, None, tuple(paths))


# ------------------------------------------------------------ dose screen (SC) and SR

# A 3 x 5 pixel font for the dose screen: five rows of three bits per glyph.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", "A": "010101111101101", "B": "110101110101110",
    "C": "011100100100011", "D": "110101101101110", "E": "111100110100111",
    "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010",
    "P": "110101110100100", "R": "110101110101101", "S": "011100010001110",
    "T": "111010010010010", "U": "101101101101111", "V": "101101101101010",
    "W": "101101111111101", "X": "101101010101101", "Y": "101101010010010",
    ".": "000000000000010", ":": "000010000010000", "-": "000000111000000",
    "/": "001001010100100",
}  # fmt: skip


def _draw_text(img: np.ndarray, text: str, row: int, col: int, scale: int, value: int) -> None:
    """Burn ``text`` into ``img`` (uint8) at (row, col); unknown characters are blanks."""
    for n, char in enumerate(text.upper()):
        bits = _GLYPHS.get(char)
        if bits is None:
            continue
        glyph = np.array([int(b) for b in bits], dtype=bool).reshape(5, 3)
        block = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        r, c = row, col + n * 4 * scale
        target = img[r : r + block.shape[0], c : c + block.shape[1]]
        target[block[: target.shape[0], : target.shape[1]]] = value


def _dose_values(study: StudyInfo) -> tuple[float, float]:
    """Deterministic CTDIvol (mGy) and DLP (mGy cm) of a study, from its UID."""
    digest = hashlib.sha256((study.study_uid + "dose").encode()).digest()
    ctdi = 6.0 + digest[0] / 255 * 10.0
    return round(ctdi, 2), round(ctdi * (38.0 + digest[1] / 255 * 12.0), 1)


def write_dose_screen(
    root: Path,
    study: StudyInfo,
    profile: SiteProfile,
    *,
    series_number: int,
    description: str = "Dose Report",
) -> WrittenSeries:
    """Write a dose-report screenshot: Secondary Capture Image Storage with Modality CT.

    The image is 8-bit MONOCHROME2, 256 x 384, with burned-in text (CTDIvol, DLP) and
    blocks, as scanners save their dose page. Returns ``kind='secondary_capture'``.
    """
    series_uid = make_uid(study.study_uid, "series", series_number)
    ds = _base_dataset(
        study,
        profile,
        sop_class=SecondaryCaptureImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        modality="CT",
        description=description,
    )
    ds.ConversionType = "WSD"  # SC Equipment module: workstation
    ds.BodyPartExamined = "ABDOMEN"  # not paired, so Laterality (2C) is not required
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = ds.SeriesDate, ds.SeriesTime
    ds.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 256, 384
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0

    ctdi, dlp = _dose_values(study)
    img = np.zeros((256, 384), dtype=np.uint8)
    img[8:40, 8:376] = 70  # title bar
    img[64:66, 8:376] = img[170:172, 8:376] = 160  # table rules
    _draw_text(img, "DOSE REPORT", 14, 16, 4, 255)
    _draw_text(img, "SERIES KVP CTDIVOL DLP", 76, 16, 3, 220)
    _draw_text(img, f"2 120 {ctdi:.2f} {dlp:.1f}", 112, 16, 3, 220)
    _draw_text(img, f"TOTAL DLP: {dlp:.1f} MGY-CM", 190, 16, 3, 255)
    _draw_text(img, "PHANTOM: BODY 32", 226, 16, 2, 180)
    uid = make_uid(series_uid, 1)
    (path,) = _paths(root, study, profile, series_number, [uid])
    _set_pixels(ds, img, ds.file_meta.TransferSyntaxUID)
    _write(ds, path, uid)
    return WrittenSeries(series_uid, series_number, "secondary_capture", description, None, (path,))


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """One code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning)."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _text_item(concept: Dataset, text: str) -> Dataset:
    """An SR content item: CONTAINS a TEXT with the given concept name."""
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([concept])
    item.TextValue = text
    return item


def write_text_sr(
    root: Path,
    study: StudyInfo,
    profile: SiteProfile,
    *,
    series_number: int,
    description: str = "Radiology Report",
) -> WrittenSeries:
    """Write a short radiology report as a Basic Text SR (Modality SR, no pixels).

    The content tree is a ``Diagnostic Imaging Report`` container (LOINC 18748-4) holding
    a ``Findings`` and an ``Impression`` section, each with one TEXT item (the section
    structure of TID 2000, without declaring the template). Returns ``kind='sr'``.
    """
    series_uid = make_uid(study.study_uid, "series", series_number)
    ds = _base_dataset(
        study,
        profile,
        sop_class=BasicTextSRStorage,
        series_uid=series_uid,
        series_number=series_number,
        modality="SR",
        description=description,
        has_pixels=False,
    )
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.InstanceNumber = 1
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    phase = "portal venous phase after IV contrast" if study.contrast else "without contrast"
    sections = (
        ("121070", "Findings", "121071", "Finding",
         f"CT of the abdomen and pelvis {phase}. Synthetic study for software testing."),
        ("121072", "Impression", "121073", "Impression",
         "Synthetic report: no clinical content."),
    )  # fmt: skip
    content = []
    for sec_code, sec_name, item_code, item_name, text in sections:
        section = Dataset()
        section.RelationshipType = "CONTAINS"
        section.ValueType = "CONTAINER"
        section.ConceptNameCodeSequence = Sequence([_code(sec_code, "DCM", sec_name)])
        section.ContinuityOfContent = "SEPARATE"
        section.ContentSequence = Sequence([_text_item(_code(item_code, "DCM", item_name), text)])
        content.append(section)
    ds.ContentSequence = Sequence(content)
    uid = make_uid(series_uid, 1)
    (path,) = _paths(root, study, profile, series_number, [uid])
    _write(ds, path, uid)
    return WrittenSeries(series_uid, series_number, "sr", description, None, (path,))
