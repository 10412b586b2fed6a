"""Write the synthetic CT images: axial series, localizer (scout) and coronal reformat.

CT Image Storage (PS3.3 A.3). Every series is built from one template ``Dataset``; per
instance only what changes (SOPInstanceUID, InstanceNumber, ImagePositionPatient,
SliceLocation, PixelData) is set before ``pydicom.dcmwrite(..., enforce_file_format=True)``;
uncompressed axial slices skip dcmwrite and splice those attributes into the template's
bytes encoded once (``_SliceEncoder``, byte-identical, checked by the tests).
Everything written is synthetic; no real patient data is used anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
)

from engine.errors import VfriskError
from engine.geometry import Grid
from engine.synth.dicom_base import (
    KVP,
    RESCALE_SLOPE,
    StudyInfo,
    WrittenSeries,
    base_dataset,
    clock,
    format_ds,
    hu_to_stored,
    make_uid,
    series_offset_s,
    series_paths,
    set_pixels,
    stored_range,
    write_instance,
)
from engine.synth.profiles import SiteProfile

__all__ = [
    "write_axial_series",
    "write_coronal_reformat",
    "write_localizer",
]

_SOFT_WINDOW = ("40", "400")  # centre, width in HU: abdomen soft tissue
_BONE_WINDOW = ("500", "2000")
_LOCALIZER_NAMES = {"SIEMENS": "Topogram  0.6  T20f", "GE MEDICAL SYSTEMS": "Scout"}


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
    ds = base_dataset(
        study,
        profile,
        sop_class=CTImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        modality="CT",
        description=description,
    )
    if ds.file_meta.TransferSyntaxUID == JPEG2000Lossless and min(shape_rc) < 32:
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
    ds.SliceThickness = format_ds(thickness_mm)
    ds.KVP = KVP
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    if kernel is not None:
        ds.ConvolutionKernel = kernel
    ds.ImageOrientationPatient = [format_ds(v) for v in orientation]
    ds.PixelSpacing = [format_ds(spacing_rc[0]), format_ds(spacing_rc[1])]
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
    ds.RescaleIntercept = format_ds(profile.rescale_intercept)
    ds.RescaleSlope = format_ds(RESCALE_SLOPE)
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
        ds.ContrastBolusStartTime = clock(study, series_offset_s(series_number) - 70)
        ds.ContrastBolusIngredient = "IODINE"
        ds.ContrastBolusIngredientConcentration = "350"
    return ds


# Attributes that change from slice to slice of an axial series (everything else is the
# template's); PixelData last.
_PER_SLICE = (
    (Tag(0x0008, 0x0018), "UI"),  # SOPInstanceUID
    (Tag(0x0020, 0x0013), "IS"),  # InstanceNumber
    (Tag(0x0020, 0x0032), "DS"),  # ImagePositionPatient
    (Tag(0x0020, 0x1041), "DS"),  # SliceLocation
)
_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_META_LENGTH = Tag(0x0002, 0x0000)  # FileMetaInformationGroupLength (UL)
_META_LENGTH_HEAD = b"\x02\x00\x00\x00UL\x04\x00"
_META_UID = Tag(0x0002, 0x0003)  # MediaStorageSOPInstanceUID


class _SliceEncoder:
    """Byte-exact fast path of ``write_instance`` for the slices of an uncompressed series.

    ``pydicom.dcmwrite`` re-encodes all ~60 attributes of every slice (most of the time a
    plain loop does not spend); here the constant attributes are encoded once, and per
    slice only the file meta, the ``_PER_SLICE`` attributes and PixelData are encoded.
    The bytes are those ``write_instance`` writes (tests compare them).
    """

    def __init__(self, ds: Dataset) -> None:
        self._meta = ds.file_meta
        self._implicit = bool(ds.file_meta.TransferSyntaxUID.is_implicit_VR)
        self._encodings = ds._character_set
        ds = correct_ambiguous_vr(ds, True)
        varying = {tag for tag, _ in _PER_SLICE} | {_PIXEL_DATA}
        # constant elements split into the runs between the per-slice tags
        bounds = [tag for tag, _ in _PER_SLICE] + [_PIXEL_DATA]
        runs: list[list[DataElement]] = [[] for _ in range(len(bounds) + 1)]
        for tag in sorted(ds.keys()):
            if tag in varying or (tag.element == 0 and tag.group > 6):
                continue
            runs[sum(tag > b for b in bounds)].append(ds[tag])
        self._runs = [self._encode(run) for run in runs]
        if self._runs[-1]:
            raise ValueError("no attribute may follow PixelData")
        pixel_vr = b"" if self._implicit else b"OW\0\0"
        self._pixel_head = _tag_bytes(_PIXEL_DATA) + pixel_vr
        self._meta_pre: bytes | None = None
        self._meta_post = b""
        self._folder: Path | None = None

    def _encode(self, elements: list[DataElement], *, implicit: bool | None = None) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = self._implicit if implicit is None else implicit
        for elem in elements:
            write_data_element(fp, elem, self._encodings)
        return fp.getvalue()

    def _meta_runs(self, uid: str) -> tuple[bytes, bytes]:
        """Encoded file meta (group 2, explicit VR) before and after the instance UID."""
        self._meta.MediaStorageSOPInstanceUID = uid
        # let pydicom complete and validate the meta (version, group length) once
        write_file_meta_info(DicomBytesIO(), self._meta, enforce_standard=True)
        tags = [t for t in sorted(self._meta.keys()) if t != _META_LENGTH]
        before = self._encode([self._meta[t] for t in tags if t < _META_UID], implicit=False)
        after = self._encode([self._meta[t] for t in tags if t > _META_UID], implicit=False)
        return before, after

    def _element(self, tag: int, vr: str, value: str, *, implicit: bool | None = None) -> bytes:
        """One short text element (UI, IS or DS) encoded as pydicom encodes it."""
        data = value.encode("ascii")
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "
        head = _tag_bytes(tag)
        if self._implicit if implicit is None else implicit:
            return head + len(data).to_bytes(4, "little") + data
        return head + vr.encode("ascii") + len(data).to_bytes(2, "little") + data

    def write(self, path: Path, values: tuple, frame: np.ndarray) -> None:
        """Write one slice: ``values`` of ``_PER_SLICE`` in order, ``frame`` 2-byte pixels."""
        if self._meta_pre is None:
            self._meta_pre, self._meta_post = self._meta_runs(values[0])
        uid_elem = self._element(_META_UID, "UI", values[0], implicit=False)
        body = len(self._meta_pre) + len(uid_elem) + len(self._meta_post)
        texts = (values[0], str(values[1]), "\\".join(values[2]), values[3])
        pixels = frame.tobytes()
        parts = [
            b"\0" * 128 + b"DICM",
            _META_LENGTH_HEAD + body.to_bytes(4, "little"),
            self._meta_pre,
            uid_elem,
            self._meta_post,
            self._runs[0],
        ]
        for (tag, vr), text, run in zip(_PER_SLICE, texts, self._runs[1:], strict=False):
            parts += [self._element(tag, vr, text), run]
        parts += [self._pixel_head, len(pixels).to_bytes(4, "little"), pixels]
        if path.parent != self._folder:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folder = path.parent
        try:
            with open(path, "xb") as fh:
                fh.write(b"".join(parts))
        except FileExistsError:
            raise VfriskError(
                "output_exists", f"{path} already exists; write to an empty archive folder"
            ) from None


def _tag_bytes(tag: int) -> bytes:
    """A tag as explicit and implicit VR little endian write it: group, then element."""
    return (tag >> 16).to_bytes(2, "little") + (tag & 0xFFFF).to_bytes(2, "little")


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
    ds.ReconstructionDiameter = format_ds(nx * dx)
    order = range(nz - 1, -1, -1) if profile.instance_order == "head_first" else range(nz)
    slices = list(order)  # slices[n] is the array slice k of InstanceNumber n + 1
    uids = [make_uid(series_uid, n + 1) for n in range(nz)]
    paths = series_paths(root, study, profile, series_number, uids)
    outside = _recon_mask(grid) if recon_circle else None
    fill = profile.pixel_padding_value
    if fill is None:
        fill = stored_range(profile)[0]
    syntax = ds.file_meta.TransferSyntaxUID
    # placeholder values so that the template has every attribute in its final form
    ds.InstanceNumber, ds.ImagePositionPatient, ds.SliceLocation = 1, ["0", "0", "0"], "0"
    ds.SOPInstanceUID = uids[0]
    encoder = None if syntax.is_compressed else _SliceEncoder(ds)
    lo, hi = stored_range(profile)
    work = np.empty((ny, nx), np.float32 if hu.dtype == np.float32 else np.float64)
    frame = np.empty((ny, nx), np.uint16 if profile.pixel_representation == 0 else np.int16)
    for n, (k, uid, path) in enumerate(zip(slices, uids, paths, strict=True)):
        # hu_to_stored(hu[k], profile) into reused buffers (same operations, same values)
        np.subtract(hu[k], work.dtype.type(profile.rescale_intercept), out=work)
        if RESCALE_SLOPE != 1.0:
            work /= RESCALE_SLOPE
        np.rint(work, out=work)
        np.clip(work, lo, hi, out=work)
        np.copyto(frame, work, casting="unsafe")
        if outside is not None:
            np.copyto(frame, fill, where=outside, casting="unsafe")
        x, y, z = grid.to_patient((k, 0, 0))
        ipp = [format_ds(x), format_ds(y), format_ds(z)]
        if encoder is not None:
            encoder.write(path, (uid, n + 1, ipp, format_ds(z)), frame)
            continue
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = ipp
        ds.SliceLocation = format_ds(z)
        set_pixels(ds, frame, syntax)
        write_instance(ds, path, uid)
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
    ds.ImagePositionPatient = [format_ds(x_left), format_ds(y_mm), format_ds(z_top)]
    uid = make_uid(series_uid, 1)
    (path,) = series_paths(root, study, profile, series_number, [uid])
    set_pixels(ds, hu_to_stored(image, profile), ds.file_meta.TransferSyntaxUID)
    write_instance(ds, path, uid)
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
    paths = series_paths(root, study, profile, series_number, uids)
    syntax = ds.file_meta.TransferSyntaxUID
    for n, (j, uid, path) in enumerate(zip(rows, uids, paths, strict=True)):
        x, y, z = grid.to_patient((nz - 1, int(j), 0))
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [format_ds(x), format_ds(y), format_ds(z)]
        set_pixels(ds, np.ascontiguousarray(hu_to_stored(hu[::-1, j, :], profile)), syntax)
        write_instance(ds, path, uid)
    return WrittenSeries(series_uid, series_number, "reformat", description, None, tuple(paths))
