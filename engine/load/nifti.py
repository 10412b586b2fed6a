"""Load a NIfTI volume (``.nii``/``.nii.gz``) onto the canonical grid, through SimpleITK.

SimpleITK reports NIfTI geometry in DICOM LPS (it converts the file's RAS qform/sform), as
origin, spacing and a direction matrix. An axis-aligned direction (identity, or flips and
permutations such as RAS-stored files) is reoriented exactly; an oblique one is resampled
(:func:`engine.load.resample.to_canonical`) with a warning. SimpleITK is imported here only,
when a NIfTI file is read: the DICOM path needs numpy and pydicom alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import VfriskError
from engine.load.resample import to_canonical
from engine.load.volume import AIR_HU, Volume

__all__ = ["is_nifti_path", "load_nifti"]


def is_nifti_path(path: Path | str) -> bool:
    """Whether a file name ends in ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def load_nifti(path: Path | str, *, labels: bool = False) -> Volume:
    """Read a 3-D NIfTI file as a float32 volume on the canonical grid.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file holding a CT in HU or a label map.
    labels : bool, optional
        The file is a label map: an oblique one is resampled by nearest neighbour with
        background 0 instead of trilinearly with air (-1024 HU).

    Returns
    -------
    Volume
        ``hu`` float32, shape (nz, ny, nx), canonical orientation; ``source`` the path.
        Values are the file's (no air floor is applied).

    Raises
    ------
    VfriskError
        ``bad_nifti`` when the file is missing, damaged, not 3-D or has no usable geometry.
    """
    import SimpleITK as sitk

    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise VfriskError("bad_nifti", f"{path} cannot be read as NIfTI: {first}") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise VfriskError(
            "bad_nifti",
            f"{path} is {image.GetDimension()}-D with {image.GetNumberOfComponentsPerPixel()} "
            "component(s) per voxel; a single 3-D volume is needed",
        )
    sx, sy, sz = image.GetSpacing()
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    if not (np.all(np.isfinite(direction)) and abs(np.linalg.det(direction)) > 1e-6):
        raise VfriskError("bad_nifti", f"{path} has a degenerate orientation matrix")
    if min(sx, sy, sz) <= 0:
        raise VfriskError("bad_nifti", f"{path} has non-positive voxel spacing")
    # a copy, not GetArrayViewFromImage: the result must outlive ``image``
    data = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)  # (k, j, i)
    matrix = np.column_stack([direction[:, 2] * sz, direction[:, 1] * sy, direction[:, 0] * sx])
    fill = 0.0 if labels else AIR_HU
    hu, grid, exact = to_canonical(
        data, np.array(image.GetOrigin()), matrix,
        fill=fill, order=0 if labels else 1,
    )  # fmt: skip
    warnings = () if exact else ("resampled an oblique NIfTI orientation onto the axial grid",)
    return Volume(hu=hu, grid=grid, warnings=warnings, source=str(path))
