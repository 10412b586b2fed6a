"""Fixtures of the loader tests: builders of small DICOM series (any axis-aligned IOP,
Enhanced CT, gantry tilt), reached through the ``mk`` fixture (tests run with
``--import-mode=importlib``, so helper modules cannot be imported by name).

The project's writer (``engine.synth.dicom_writer``) only writes head-first supine stacks;
these write the other variants from a canonical volume, so that the truth is known exactly.
Everything is synthetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from engine.geometry import Grid

INTERCEPT = -1024.0


def small_grid(nz: int = 12, ny: int = 20, nx: int = 26) -> Grid:
    """A small anisotropic grid; ny != nx and dy != dx so a swapped axis shows."""
    return Grid((-10.4, 20.3, -150.0), (2.5, 0.7, 0.8), (nz, ny, nx))


def phantom(grid: Grid, seed: int = 0) -> np.ndarray:
    """Integer HU: air around a water ellipse with a bone rod, noise, and one bright bead.

    The bead (2000 HU, at :func:`bead_index`) is the only voxel above 1500 HU.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = grid.shape_zyx
    j, i = np.mgrid[0:ny, 0:nx]
    r2 = ((j - ny / 2) / ny) ** 2 + ((i - nx / 2) / nx) ** 2
    plane = np.where(r2 < 0.4**2, 0.0, -1000.0)
    plane[r2 < 0.08**2] = 700.0
    hu = np.rint(plane[None] + rng.normal(0.0, 15.0, grid.shape_zyx))
    hu[bead_index(grid)] = 2000.0
    return hu.astype(np.float32)


def bead_index(grid: Grid) -> tuple[int, int, int]:
    """Voxel (k, j, i) of the bead: off-centre on every axis."""
    nz, ny, nx = grid.shape_zyx
    return (nz * 2 // 3, ny // 3, nx * 3 // 4)


def ct_template(
    rows: int, cols: int, spacing_rc: tuple[float, float], iop: Sequence[float], series_uid: str
) -> Dataset:
    """A minimal CT Image Storage dataset (signed 16 bit, intercept -1024)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[series_uid, "study"])
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[series_uid, "for"])
    ds.Modality = "CT"
    ds.PatientID = "SYNTHETIC"
    ds.ImageOrientationPatient = [f"{v:g}" for v in iop]
    ds.PixelSpacing = [f"{spacing_rc[0]:g}", f"{spacing_rc[1]:g}"]
    ds.SliceThickness = "2.5"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{INTERCEPT:g}", "1", "HU"
    return ds


def _axis(vec: np.ndarray) -> tuple[int, int]:
    """(patient axis 0 x / 1 y, sign) of an in-plane axis-aligned direction."""
    p = int(np.argmax(np.abs(vec)))
    assert p in (0, 1) and abs(abs(vec[p]) - 1) < 1e-9, vec
    return p, int(np.sign(vec[p]))


def frames_for_iop(
    hu: np.ndarray, grid: Grid, iop: Sequence[float]
) -> tuple[list[np.ndarray], list[tuple[float, float, float]], tuple[float, float]]:
    """Each canonical slice k as a frame in IOP ``iop`` (axis-aligned, axial).

    Returns the frames (rows, cols), their ImagePositionPatient and PixelSpacing.
    """
    u, v = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    (pu, su), (pv, sv) = _axis(u), _axis(v)
    spacing_xy = (grid.spacing_zyx[2], grid.spacing_zyx[1])
    n_xy = (grid.shape_zyx[2], grid.shape_zyx[1])
    frames, ipps = [], []
    for k in range(grid.shape_zyx[0]):
        plane = hu[k]  # (y, x)
        plane_vu = plane if (pv, pu) == (1, 0) else plane.T  # rows along v's axis
        frames.append(np.ascontiguousarray(plane_vu[::sv, ::su]))
        idx = [0, 0]  # canonical (x index, y index) of frame pixel [0, 0]
        idx[pu] = 0 if su > 0 else n_xy[pu] - 1
        idx[pv] = 0 if sv > 0 else n_xy[pv] - 1
        ipps.append(grid.to_patient((k, idx[1], idx[0])))
    return frames, ipps, (spacing_xy[pv], spacing_xy[pu])


def write_classic(
    folder: Path,
    frames: Sequence[np.ndarray],
    ipps: Sequence[Sequence[float]],
    spacing_rc: tuple[float, float],
    iop: Sequence[float],
    *,
    seed: int = 0,
    order: str = "shuffled",
    skip: Iterable[int] = (),
) -> list[Path]:
    """Write one file per frame; InstanceNumber follows ``order`` and so do the file names.

    ``order`` is 'shuffled' (random names and instance numbers), 'as_given' or 'reversed'.
    Frames whose index is in ``skip`` are not written (missing slices).
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=[str(folder), "series"])
    rows, cols = frames[0].shape
    ds = ct_template(rows, cols, spacing_rc, iop, series_uid)
    n = len(frames)
    ranks = {"as_given": np.arange(n), "reversed": np.arange(n)[::-1]}.get(order)
    if ranks is None:
        ranks = np.random.default_rng(seed).permutation(n)
    skipped = set(skip)
    paths = []
    for k, (frame, ipp) in enumerate(zip(frames, ipps, strict=True)):
        if k in skipped:
            continue
        uid = generate_uid(entropy_srcs=[series_uid, str(k)])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = int(ranks[k]) + 1
        ds.ImagePositionPatient = [f"{float(v):.6f}" for v in ipp]
        ds.PixelData = (np.rint(frame) - INTERCEPT).astype(np.int16).tobytes()
        path = folder / f"x{int(ranks[k]):04d}"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced(
    path: Path,
    frames: Sequence[np.ndarray],
    ipps: Sequence[Sequence[float]],
    spacing_rc: tuple[float, float],
    iop: Sequence[float],
    *,
    seed: int = 0,
    intercepts: Sequence[float] | None = None,
) -> Path:
    """One Enhanced CT Image Storage file holding every frame, in shuffled frame order.

    Orientation, spacing live in the Shared Functional Groups; position and (per-frame)
    rescale in the Per-frame Functional Groups (PS3.3 C.7.6.16).
    """
    n = len(frames)
    order = np.random.default_rng(seed).permutation(n)
    intercepts = list(intercepts) if intercepts is not None else [INTERCEPT] * n
    series_uid = generate_uid(entropy_srcs=[str(path), "series"])
    rows, cols = frames[0].shape
    ds = ct_template(rows, cols, spacing_rc, iop, series_uid)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = EnhancedCTImageStorage
    for keyword in ("ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "RescaleIntercept", "RescaleSlope", "RescaleType"):  # fmt: skip
        delattr(ds, keyword)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=[series_uid, "enhanced"]
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = n
    shared = Dataset()
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [f"{v:g}" for v in iop]
    measures.PixelSpacing = [f"{spacing_rc[0]:g}", f"{spacing_rc[1]:g}"]
    measures.SliceThickness = "2.5"
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame, data = [], []
    for k in order:
        item, position, rescale = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [f"{float(v):.6f}" for v in ipps[k]]
        rescale.RescaleIntercept = f"{intercepts[k]:g}"
        rescale.RescaleSlope = "1"
        rescale.RescaleType = "HU"
        item.PlanePositionSequence = [position]
        item.PixelValueTransformationSequence = [rescale]
        per_frame.append(item)
        data.append((np.rint(frames[k]) - intercepts[k]).astype(np.int16))
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.stack(data).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def tilted_series(
    folder: Path, bead_xyz: tuple[float, float, float], tilt_deg: float, *, seed: int = 0
) -> list[Path]:
    """A gantry-tilted stack holding an analytic Gaussian bead (sigma 1.5 mm) in water.

    Slices are stacked along z (table motion, 2 mm apart) while the image planes are
    rotated about x by ``tilt_deg``: IOP ``[1, 0, 0, 0, cos t, sin t]``. Pixel (r, c) of
    slice s lies at ``IPP_s + c dx (1, 0, 0) + r dy (0, cos t, sin t)``.
    """
    t = np.radians(tilt_deg)
    iop = (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t)))
    nz, ny, nx, dz, dy, dx = 30, 40, 36, 2.0, 1.0, 1.0
    x0, y0, z0 = -18.0, -20.0, -30.0
    c, r = np.meshgrid(np.arange(nx), np.arange(ny))
    frames, ipps = [], []
    rng = np.random.default_rng(seed)
    for s in range(nz):
        ipp = (x0, y0, z0 + s * dz)
        x = ipp[0] + c * dx
        y = ipp[1] + r * dy * iop[4]
        z = ipp[2] + r * dy * iop[5]
        d2 = (x - bead_xyz[0]) ** 2 + (y - bead_xyz[1]) ** 2 + (z - bead_xyz[2]) ** 2
        frames.append(1500.0 * np.exp(-d2 / (2 * 1.5**2)) + rng.normal(0, 2.0, x.shape))
        ipps.append(ipp)
    return write_classic(folder, frames, ipps, (dy, dx), iop, seed=seed)


@pytest.fixture
def mk() -> SimpleNamespace:
    """The builders of this module as attributes: ``mk.small_grid()``, ``mk.phantom(...)``."""
    return SimpleNamespace(
        INTERCEPT=INTERCEPT, small_grid=small_grid, phantom=phantom, bead_index=bead_index,
        ct_template=ct_template, frames_for_iop=frames_for_iop, write_classic=write_classic,
        write_enhanced=write_enhanced, tilted_series=tilted_series,
    )  # fmt: skip
