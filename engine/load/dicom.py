"""Load one DICOM series into a :class:`~engine.load.volume.Volume` in HU, canonical orientation.

What happens, in order:

1. Every file is read and decoded once (:mod:`engine.load.frames`): classic single-frame
   CT and Enhanced (multi-frame) CT with per-frame or shared functional groups; any
   transfer syntax pydicom can decode (uncompressed little or big endian, JPEG Lossless,
   JPEG-LS, JPEG 2000, RLE); signed or unsigned pixels; per-frame RescaleSlope/Intercept.
   Plain single-frame files (uncompressed little endian, 16 bits) skip pydicom: their
   headers are walked raw (:mod:`engine.load.plain`) and their pixels are read only in
   step 5, slice by slice into one reused buffer, with identical results.
2. Repeated instances (same SOPInstanceUID and frame) are dropped; frames must agree in
   Rows, Columns, PixelSpacing and ImageOrientationPatient (else ``mixed_sizes``) and the
   planes must be within ``max_plane_angle_deg`` of axial (else ``not_axial``).
3. Frames are sorted by their position along the plane normal, ``IPP . (row x col)``
   (PS3.3 C.7.6.2.1.1), never by file name or InstanceNumber. Two frames at the same
   position with identical pixels are one image stored twice (one is dropped); with
   different pixels the series is refused (``overlapping_slices``).
4. Slice spacing is checked against the median: gaps up to ``max_gap_factor`` x the median
   (a missing slice) and uneven spacing are filled by linear interpolation onto uniform
   positions, with a warning; a larger gap refuses the series (``slice_gap``).
5. HU = stored x slope + intercept in float32; pixels equal to PixelPaddingValue (up to
   PixelPaddingRangeLimit) become air, -1024 HU, as does everything below -1024 HU after
   rescale (out-of-field values such as GE's -2000 stored with intercept -1024, i.e.
   -3024 HU, or Canon's -3024).
6. The stack is brought to the canonical orientation of :class:`engine.geometry.Grid`
   (``[k, j, i]`` along +z head, +y posterior, +x patient left; slice 0 most caudal).
   Feet-first or head-first, prone or supine and decubitus series, whose
   ImageOrientationPatient is axis-aligned (for example ``[-1, 0, 0, 0, -1, 0]`` prone),
   are reoriented exactly by axis flips and transposes: no value changes. A gantry-tilted
   stack (slices stacked along z while their planes are tilted) or oblique planes are
   resampled trilinearly onto an orthogonal grid of the same shape and spacings centred on
   the acquired volume (:func:`engine.load.resample.to_canonical`), with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.dicom_geometry import (
    axial_angle_deg,
    positions_along_normal,
    slice_normal,
    stack_tilt_deg,
)
from engine.errors import VfriskError
from engine.load.frames import Frame, read_frames, to_hu
from engine.load.plain import read_plain_frame
from engine.load.resample import interpolate_slices, is_axis_aligned, to_canonical
from engine.load.volume import AIR_HU, Volume

__all__ = [
    "DEFAULT_MAX_GAP_FACTOR",
    "DEFAULT_MAX_PLANE_ANGLE_DEG",
    "DEFAULT_SPACING_TOLERANCE",
    "load_series",
]

# Defaults of the [loading] section of engine/default_config.toml (a test keeps them equal).
DEFAULT_MAX_GAP_FACTOR = 2.5
DEFAULT_SPACING_TOLERANCE = 0.05
DEFAULT_MAX_PLANE_ANGLE_DEG = 30.0
_SAME_POSITION_MM = 1e-3
_TILT_WARN_DEG = 0.1


def _name(frames: Sequence[Frame]) -> str:
    uid = frames[0].series_uid
    return f"series {uid}" if uid else f"the series of {frames[0].path}"


def _read(path: Path | str) -> list[Frame]:
    """The frames of one file: the raw fast path when it applies, else pydicom."""
    path = str(path)
    frame = read_plain_frame(path)
    return [frame] if frame is not None else read_frames(path)


def _unique(frames: list[Frame]) -> list[Frame]:
    """Drop repeated instances: the same SOPInstanceUID and frame number seen twice."""
    seen: set[tuple[str, int]] = set()
    out = []
    for frame in frames:
        key = (frame.sop_uid, frame.index)
        if key not in seen:
            seen.add(key)
            out.append(frame)
    return out


def _check_consistent(frames: list[Frame], max_plane_angle_deg: float) -> None:
    ref = frames[0]
    name = _name(frames)
    series = {f.series_uid for f in frames if f.series_uid}
    if len(series) > 1:
        raise VfriskError(
            "mixed_series",
            f"the files given as one series belong to {len(series)} series "
            f"({', '.join(sorted(series)[:3])}...); load each series separately",
        )
    for f in frames[1:]:
        what = None
        if f.shape != ref.shape:
            what = f"Rows x Columns {f.shape} vs {ref.shape}"
        elif not np.allclose(f.spacing_rc, ref.spacing_rc, rtol=1e-4, atol=1e-5):
            what = f"PixelSpacing {f.spacing_rc} vs {ref.spacing_rc}"
        elif not np.allclose(f.iop, ref.iop, atol=1e-4):
            what = f"ImageOrientationPatient {f.iop} vs {ref.iop}"
        if what:
            raise VfriskError(
                "mixed_sizes",
                f"{name}: {f.path} differs from {ref.path} in {what}; the series mixes "
                "images of different sizes or orientations",
            )
    try:
        angle = axial_angle_deg(ref.iop)
    except ValueError as exc:
        raise VfriskError("bad_header", f"{ref.path}: {exc}") from None
    if angle > max_plane_angle_deg:
        raise VfriskError(
            "not_axial",
            f"{name}: image planes are {angle:.0f} degrees from axial (IOP {list(ref.iop)}); "
            f"only axial series (<= {max_plane_angle_deg:g} degrees) are loaded",
        )


def _sorted_unique(frames: list[Frame], name: str) -> tuple[list[Frame], np.ndarray]:
    """Frames sorted along the normal, same-position duplicates dropped; and positions (mm)."""
    ipps = np.array([f.ipp for f in frames])
    positions = positions_along_normal(frames[0].iop, ipps)
    order = np.argsort(positions, kind="stable")
    kept: list[Frame] = []
    kept_pos: list[float] = []
    for n in order:
        frame, p = frames[n], float(positions[n])
        if kept and abs(p - kept_pos[-1]) < _SAME_POSITION_MM:
            if np.array_equal(frame.pixels, kept[-1].pixels) and (
                frame.slope,
                frame.intercept,
            ) == (kept[-1].slope, kept[-1].intercept):
                continue  # the same image stored twice (e.g. re-sent under a new UID)
            raise VfriskError(
                "overlapping_slices",
                f"{name}: {frame.path} and {kept[-1].path} are different images at the same "
                f"position ({p:.2f} mm along the normal); the series mixes acquisitions",
            )
        kept.append(frame)
        kept_pos.append(p)
    return kept, np.array(kept_pos)


def _targets(
    positions: np.ndarray, name: str, max_gap_factor: float, tolerance: float
) -> np.ndarray | None:
    """Uniform positions to interpolate at, or None when the spacing is already regular."""
    if len(positions) < 2:
        return None
    diffs = np.diff(positions)
    median = float(np.median(diffs))
    if np.all(np.abs(diffs - median) <= tolerance * median):
        return None
    worst = int(np.argmax(diffs))
    if diffs[worst] > max_gap_factor * median:
        raise VfriskError(
            "slice_gap",
            f"{name}: {diffs[worst]:.2f} mm gap between slices at {positions[worst]:.2f} and "
            f"{positions[worst + 1]:.2f} mm along the normal, more than {max_gap_factor:g} x "
            f"the median spacing {median:.2f} mm; slices are missing, re-send the series",
        )
    n_steps = max(round((positions[-1] - positions[0]) / median), 1)
    return positions[0] + (positions[-1] - positions[0]) * np.arange(n_steps + 1) / n_steps


def _gap_warning(
    positions: np.ndarray, targets: np.ndarray, start: np.ndarray, direction: np.ndarray
) -> str:
    """Words for what interpolation did: which positions were new, as patient z (mm)."""
    new = [t for t in targets if np.min(np.abs(positions - t)) >= _SAME_POSITION_MM]
    zs = ", ".join(f"{float(start[2] + (t - positions[0]) * direction[2]):.2f}" for t in new[:5])
    more = "" if len(new) <= 5 else f" and {len(new) - 5} more"
    spacing = targets[1] - targets[0]
    if len(new) == len(targets) - len(positions):
        return (
            f"interpolated {len(new)} missing slice{'s' if len(new) != 1 else ''} at "
            f"z={zs}{more} mm (slice spacing {spacing:.3g} mm)"
        )
    diffs = np.diff(positions)
    return (
        f"resampled uneven slice spacing ({diffs.min():.3g}-{diffs.max():.3g} mm) to "
        f"{spacing:.3g} mm by linear interpolation ({len(new)} new slices, first at z={zs} mm)"
    )


def load_series(
    paths: Sequence[Path | str],
    *,
    max_gap_factor: float = DEFAULT_MAX_GAP_FACTOR,
    spacing_tolerance: float = DEFAULT_SPACING_TOLERANCE,
    max_plane_angle_deg: float = DEFAULT_MAX_PLANE_ANGLE_DEG,
) -> Volume:
    """Load the files of one DICOM series as a volume in HU on the canonical grid.

    Parameters
    ----------
    paths : sequence of path-like
        The series' files, in any order (single-frame images, or Enhanced multi-frame).
    max_gap_factor : float, optional
        Largest gap between neighbouring slices, as a multiple of the median spacing, that
        is filled by interpolation (config ``loading.max_gap_factor``).
    spacing_tolerance : float, optional
        Relative spacing deviation still treated as regular (``loading.spacing_tolerance``).
    max_plane_angle_deg : float, optional
        Largest angle between plane normal and body axis (``loading.max_plane_angle_deg``).

    Returns
    -------
    Volume
        ``hu`` float32, shape (nz, ny, nx), canonical orientation (see the module
        docstring); ``warnings`` lists interpolations and resampling; ``source`` is the
        SeriesInstanceUID (or the first path when the files carry none).

    Raises
    ------
    VfriskError
        File-level codes of :func:`engine.load.frames.read_frames`, and ``mixed_series``,
        ``mixed_sizes``, ``not_axial``, ``overlapping_slices``, ``slice_gap``.
    """
    if len(paths) == 0:
        raise VfriskError("bad_argument", "load_series got no files")
    frames = _unique([f for p in paths for f in _read(p)])
    _check_consistent(frames, max_plane_angle_deg)
    name = _name(frames)
    frames, positions = _sorted_unique(frames, name)
    targets = _targets(positions, name, max_gap_factor, spacing_tolerance)

    ref = frames[0]
    rows, cols = ref.shape
    stack = np.empty((len(frames), rows, cols), dtype=np.float32)
    scratch = np.empty(rows * cols, dtype=np.uint16)  # stays in cache from read to convert
    for n, frame in enumerate(frames):
        to_hu(frame, stack[n], scratch)

    warnings: list[str] = []
    iop = np.asarray(ref.iop)
    start, end = np.asarray(ref.ipp), np.asarray(frames[-1].ipp)
    if len(frames) > 1:
        direction = (end - start) / (positions[-1] - positions[0])  # mm per mm along normal
    else:
        direction = slice_normal(iop)
    if targets is not None:
        warnings.append(_gap_warning(positions, targets, start, direction))
        stack = interpolate_slices(stack, positions, targets)
        step = direction * (targets[1] - targets[0])
    elif len(frames) > 1:
        step = (end - start) / (len(frames) - 1)
    else:
        step = slice_normal(iop) * ref.thickness

    dr, dc = ref.spacing_rc
    matrix = np.column_stack([step, iop[3:] * dr, iop[:3] * dc])
    if not is_axis_aligned(matrix):
        tilt = stack_tilt_deg(ref.iop, np.array([f.ipp for f in frames]))
        if tilt > _TILT_WARN_DEG:
            warnings.append(
                f"corrected a gantry tilt of {tilt:.1f} degrees by resampling onto an "
                "orthogonal grid (trilinear)"
            )
        else:
            warnings.append(
                f"resampled oblique planes ({axial_angle_deg(ref.iop):.1f} degrees from "
                "axial) onto the axial grid (trilinear)"
            )
    hu, grid, _ = to_canonical(stack, start, matrix, fill=AIR_HU)
    return Volume(hu=hu, grid=grid, warnings=tuple(warnings), source=ref.series_uid or ref.path)
