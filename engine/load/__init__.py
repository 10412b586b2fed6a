"""Load an eligible series (DICOM files or a NIfTI file) as a volume in HU, canonical grid.

``load_volume`` is the one entry point: a ``.nii``/``.nii.gz`` path goes to
:func:`load_nifti`, anything else (a file, or a sequence of files of one series) to
:func:`load_series`. Every result is a :class:`Volume` whose ``hu`` array is float32,
shape (nz, ny, nx), indexed ``[k, j, i]`` along +z (head), +y (posterior), +x (patient
left) in DICOM LPS mm: the orientation of :class:`engine.geometry.Grid`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.load.dicom import load_series
from engine.load.nifti import is_nifti_path, load_nifti
from engine.load.volume import AIR_HU, Volume

__all__ = ["AIR_HU", "Volume", "load_nifti", "load_series", "load_volume"]


def load_volume(source: Sequence[Path | str] | Path | str, **options: float) -> Volume:
    """Load a NIfTI file or the DICOM files of one series.

    Parameters
    ----------
    source : path-like or sequence of path-like
        A ``.nii``/``.nii.gz`` file, one DICOM file (e.g. Enhanced CT), or the files of
        one DICOM series.
    **options : float
        Passed to :func:`load_series` (``max_gap_factor``, ``spacing_tolerance``,
        ``max_plane_angle_deg``); ignored for NIfTI.

    Returns
    -------
    Volume
        See :func:`load_series` and :func:`load_nifti`.
    """
    if isinstance(source, str | Path):
        if is_nifti_path(source):
            return load_nifti(source)
        return load_series([source], **options)
    paths = list(source)
    if len(paths) == 1 and is_nifti_path(paths[0]):
        return load_nifti(paths[0])
    return load_series(paths, **options)
