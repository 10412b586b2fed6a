"""The model's inputs: per level a bone-only and a bone+muscle patch (Kong et al. 2025).

Per level of ``[preprocessing] levels`` (T12-L4), from a CT in HU and its
:class:`~engine.anatomy.labels.Segmentation`:

1. the crop grid: ``crop_zyx`` voxels (24 x 128 x 224) at ``spacing_zyx_mm`` (3 x 1 x 1 mm),
   axis-aligned, centred in z on the vertebral body's cranio-caudal extent and in x/y on
   the bounding box of the body plus the level's muscles (paraspinal ``autochthon_*`` and
   ``iliopsoas_*`` voxels within the body's own slices, as the study restricts them);
2. the CT is resampled onto it trilinearly (air outside the scan), the labels by nearest
   neighbour;
3. intensity: ``fixed_window`` (default) clips HU to ``hu_window`` (-200..1000) and maps
   it linearly to [0, 1], so a denser body gives brighter values in every patient;
   ``study_minmax`` is the study's clip to ``study_clip_hu`` (0..1000) then min-max over
   the patch;
4. the patch and its masks are resized to ``network_zyx`` (32 x 64 x 112; linear for the
   image, nearest for the masks, voxel centres aligned);
5. bone-only = image where the body mask is set, 0 elsewhere; bone+muscle = image where
   the body or the level's muscle mask is set, 0 elsewhere;
6. the spinal canal's HU behind each body (:func:`engine.anatomy.canal.canal_hu`), the
   scan's internal HU reference, goes with them (``canal_hu``); the biomarkers' trabecular
   HU and height loss of each body join them once measured (:data:`READINGS`).

A level without a body in the segmentation is all zeros with ``level_present`` False,
never a silent zero patch. :func:`save_inputs` / :func:`load_inputs` cache a
:class:`ModelInputs` as one compressed ``.npz`` per series and preprocessing version; a
file made with other settings is refused (``preprocessing_mismatch``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.anatomy.canal import canal_hu
from engine.anatomy.labels import BODY_LEVELS, MUSCLE_LABELS, Segmentation
from engine.errors import VfriskError
from engine.load.volume import AIR_HU

__all__ = [
    "LevelPatch",
    "ModelInputs",
    "PreprocessingSettings",
    "READINGS",
    "build_inputs",
    "cache_path",
    "level_patch",
    "load_inputs",
    "save_inputs",
]

_LEVEL_ID = {level: i for i, level in BODY_LEVELS.items()}
#: label -> is a muscle (a lookup table: ``_IS_MUSCLE[labels]`` is ``np.isin(labels,
#: MUSCLE_LABELS)``, several times faster on uint8)
_IS_MUSCLE = np.isin(np.arange(256), sorted(MUSCLE_LABELS))
_INTENSITIES = ("fixed_window", "study_minmax")
_DTYPES = ("float16", "uint8")
#: The per-level readings that travel with the patches (float32, NaN = not measured).
READINGS = ("canal_hu", "trabecular_hu", "height_loss")


@dataclass(frozen=True)
class PreprocessingSettings:
    """The ``[preprocessing]`` section as a typed record (units in the names)."""

    version: str
    levels: tuple[str, ...]
    spacing_zyx_mm: tuple[float, float, float]
    crop_zyx: tuple[int, int, int]
    network_zyx: tuple[int, int, int]
    intensity: str
    hu_window: tuple[float, float]
    study_clip_hu: tuple[float, float]
    dtype: str

    def __post_init__(self) -> None:
        if self.intensity not in _INTENSITIES:
            raise VfriskError(
                "bad_config", f"preprocessing.intensity must be one of {_INTENSITIES}"
            )
        if self.dtype not in _DTYPES:
            raise VfriskError("bad_config", f"preprocessing.dtype must be one of {_DTYPES}")
        unknown = [lv for lv in self.levels if lv not in _LEVEL_ID]
        if unknown:
            raise VfriskError("bad_config", f"preprocessing.levels: unknown levels {unknown}")
        for name in ("hu_window", "study_clip_hu"):
            lo, hi = getattr(self, name)
            if not hi > lo:
                raise VfriskError("bad_config", f"preprocessing.{name} must be [low, high]")

    @classmethod
    def from_config(cls, config: Any) -> PreprocessingSettings:
        """From a :class:`engine.config.Config` (or a mapping with a ``preprocessing`` table)."""
        p = config["preprocessing"]
        return cls(
            version=str(p["version"]),
            levels=tuple(p["levels"]),
            spacing_zyx_mm=tuple(float(v) for v in p["spacing_zyx_mm"]),
            crop_zyx=tuple(int(v) for v in p["crop_zyx"]),
            network_zyx=tuple(int(v) for v in p["network_zyx"]),
            intensity=str(p["intensity"]),
            hu_window=tuple(float(v) for v in p["hu_window"]),
            study_clip_hu=tuple(float(v) for v in p["study_clip_hu"]),
            dtype=str(p["dtype"]),
        )

    def digest(self) -> str:
        """Short hash of every setting: a cache made with other settings is refused."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ModelInputs:
    """The model inputs of one series.

    Attributes
    ----------
    series_uid : str
    preprocessing_version : str
        ``[preprocessing] version``.
    settings_digest : str
        :meth:`PreprocessingSettings.digest` of the settings that made it.
    levels : tuple of str
        Level of each row, cranial first (T12..L4).
    bone : np.ndarray
        Shape (n_levels, *network_zyx), float16 in [0, 1] or uint8 in 0-255; 0 outside the
        vertebral body.
    bone_muscle : np.ndarray
        Same shape and dtype; 0 outside the body and the level's muscles.
    level_present : np.ndarray
        bool, shape (n_levels,); False rows are all zero (level not in the segmentation).
    spacing_zyx_mm : tuple of float
        Voxel spacing of the patches (mm): ``spacing_zyx_mm * crop_zyx / network_zyx``.
    centres_xyz : np.ndarray
        float64, shape (n_levels, 3): patient position (LPS mm) of each patch centre; NaN
        for missing levels.
    intensity : str
        ``fixed_window`` or ``study_minmax``.
    hu_window : tuple of float or None
        With ``fixed_window``: the HU mapped to 0 and 1 (so patch values read as HU);
        None with ``study_minmax`` (each patch has its own scale).
    canal_hu : np.ndarray
        float32, shape (n_levels,): the spinal canal's median HU behind each body
        (:func:`engine.anatomy.canal.canal_hu`, the scan's internal HU reference); NaN for
        missing levels and where it could not be read. Default all NaN (not measured).
    trabecular_hu : np.ndarray
        float32, shape (n_levels,): the body's trabecular HU as the biomarkers measure it
        (:mod:`engine.anatomy.biomarkers`: an eroded ROI on the native slices, within
        10 HU of the truth at 1 and 5 mm), set by :func:`engine.prepare.prepare_volume`
        once they are measured; NaN for missing or excluded levels (cement, hardware)
        and where not measured (the default). A patch resampled from 5 mm slices mixes
        endplate and disc into the body's voxels: its statistics follow the true density
        less closely (correlation 0.87 against 0.985 for this reading on 150 5 mm scans).
    height_loss : np.ndarray
        float32, shape (n_levels,): the body's height loss as the biomarkers measure it
        along its own axis on the native slices, the largest of its wedge, biconcave and
        crush ratios (0-1, Genant's grades start at 0.20), set by
        :func:`engine.prepare.prepare_volume` with ``trabecular_hu``; NaN for missing
        levels, where no ratio was measurable and where not measured (the default).
    """

    series_uid: str
    preprocessing_version: str
    settings_digest: str
    levels: tuple[str, ...]
    bone: np.ndarray
    bone_muscle: np.ndarray
    level_present: np.ndarray
    spacing_zyx_mm: tuple[float, float, float]
    centres_xyz: np.ndarray
    intensity: str
    hu_window: tuple[float, float] | None = None
    canal_hu: np.ndarray | None = None
    trabecular_hu: np.ndarray | None = None
    height_loss: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.levels)
        for name in READINGS:
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, np.full(n, np.nan, dtype=np.float32))
            elif np.shape(value) != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {np.shape(value)}")
        if self.bone.shape != self.bone_muscle.shape or self.bone.shape[0] != n:
            raise ValueError(f"bone {self.bone.shape} / bone_muscle {self.bone_muscle.shape}")
        if self.level_present.shape != (n,) or self.level_present.dtype != bool:
            raise ValueError("level_present must be bool of shape (n_levels,)")
        absent = ~self.level_present
        if self.bone[absent].any() or self.bone_muscle[absent].any():
            raise ValueError("a missing level must be all zero")


@dataclass(frozen=True)
class LevelPatch:
    """One level on the network grid, before masking.

    Attributes
    ----------
    image : np.ndarray
        float32 in [0, 1], shape ``network_zyx``: the scaled CT patch.
    body, muscle : np.ndarray
        bool, same shape: the body and the level's muscles (within the body's slices).
    centre_xyz : tuple of float
        Patch centre (LPS mm).
    """

    image: np.ndarray
    body: np.ndarray
    muscle: np.ndarray
    centre_xyz: tuple[float, float, float]


def _scale(hu: np.ndarray, settings: PreprocessingSettings) -> np.ndarray:
    if settings.intensity == "fixed_window":
        lo, hi = settings.hu_window
        return (np.clip(hu, lo, hi) - np.float32(lo)) / np.float32(hi - lo)
    lo, hi = settings.study_clip_hu
    x = np.clip(hu, lo, hi)
    x_min, x_max = float(x.min()), float(x.max())
    if x_max <= x_min:
        return np.zeros_like(x)
    return (x - np.float32(x_min)) / np.float32(x_max - x_min)


def _axis_map(
    n_in: int, n_out: int, scale: float, offset: float, order: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Source index, linear weight and inside-mask of each output index along one axis.

    As ``scipy.ndimage.affine_transform`` with ``mode="constant"``: output ``o`` samples
    input coordinate ``scale * o + offset``; a coordinate outside ``[0, n_in - 1]`` gives
    ``cval``; order 0 takes ``floor(x + 0.5)``, order 1 interpolates ``i0`` and ``i0 + 1``.
    """
    # in scipy's order of operations (zoom_shift: (o + offset / scale) * scale), so that
    # nearest-neighbour ties at exactly half a voxel round the same way
    x = (np.arange(n_out, dtype=np.float64) + offset / scale) * scale
    inside = (x >= 0.0) & (x <= n_in - 1)
    if order == 0:
        return np.clip(np.floor(x + 0.5), 0, n_in - 1).astype(np.intp), None, inside
    i0 = np.clip(np.floor(x), 0, max(n_in - 2, 0)).astype(np.intp)
    return i0, np.clip(x - i0, 0.0, 1.0), inside


def _resample(
    data: np.ndarray,
    scale_zyx: np.ndarray,
    offset_zyx: np.ndarray,
    shape: tuple[int, int, int],
    order: int,
    cval: float,
) -> np.ndarray:
    """Output index o -> input index ``scale * o + offset`` (axis-aligned), order 0 or 1.

    The result of ``scipy.ndimage.affine_transform(data, scale, offset, shape, order,
    mode="constant", cval, prefilter=False)`` (to float32 rounding), computed one axis at
    a time (z, then y, then x; in float64 when linear) on the part of ``data`` the output
    reads: 3-7x faster, and it never touches the rest of a 512 x 512 x N volume. Linear
    goes one output slice at a time, so its float64 intermediates stay in the cache
    (1.7x faster again, issue 7; each value comes from the same operations, so the
    result is the same to the bit).
    """
    maps = [
        _axis_map(n, m, float(sc), float(of), order)
        for n, m, sc, of in zip(data.shape, shape, scale_zyx, offset_zyx, strict=True)
    ]
    lo = [int(i0.min()) for i0, _, _ in maps]
    hi = [min(n, int(i0.max()) + 1 + order) for n, (i0, _, _) in zip(data.shape, maps, strict=True)]
    sub = data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    (kz, wz, in_z), (ky, wy, in_y), (kx, wx, in_x) = (
        (i0 - first, w, inside) for (i0, w, inside), first in zip(maps, lo, strict=True)
    )
    if wz is None or wy is None or wx is None:  # nearest neighbour
        out = np.take(np.take(np.take(sub, kz, axis=0), ky, axis=1), kx, axis=2)
    else:
        # sample i0 and i1 = i0 + 1 (the last index stays) with weights 1 - w and w
        kz1, ky1, kx1 = (
            np.minimum(k + 1, n - 1) for k, n in zip((kz, ky, kx), sub.shape, strict=True)
        )
        vz0, vz1 = 1.0 - wz, wz
        vy0, vy1 = (1.0 - wy)[:, None], wy[:, None]
        vx0, vx1 = 1.0 - wx, wx
        out = np.empty(shape, dtype=data.dtype)
        for o in range(shape[0]):
            plane = sub[kz[o]] * vz0[o] + sub[kz1[o]] * vz1[o]  # float64: the weights are
            plane = plane[ky] * vy0 + plane[ky1] * vy1
            out[o] = plane[:, kx] * vx0 + plane[:, kx1] * vx1
    inside = in_z[:, None, None] & in_y[None, :, None] & in_x[None, None, :]
    if not inside.all():
        out = np.where(inside, out, np.asarray(cval, dtype=data.dtype))
    return out


def level_patch(
    hu: np.ndarray, segmentation: Segmentation, level: str, settings: PreprocessingSettings
) -> LevelPatch | None:
    """The scaled patch and masks of one level, or None when its body is absent.

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape ``segmentation.grid.shape_zyx``.
    segmentation : Segmentation
    level : str
        'T12'..'L4'.
    settings : PreprocessingSettings
    """
    grid = segmentation.grid
    labels = segmentation.labels
    boxes = segmentation.boxes
    lid = _LEVEL_ID[level]
    if lid not in boxes:
        return None
    box = boxes[lid]
    k_first, k_last = box[0].start, box[0].stop - 1
    # the body and the muscles on the body's slices, in the box that can hold them
    near = [box] + [boxes[m] for m in MUSCLE_LABELS if m in boxes]
    j_lo, j_hi = min(b[1].start for b in near), max(b[1].stop for b in near)
    i_lo, i_hi = min(b[2].start for b in near), max(b[2].stop for b in near)
    slab = labels[k_first : k_last + 1, j_lo:j_hi, i_lo:i_hi]
    region = (slab == lid) | _IS_MUSCLE[slab]
    js = np.flatnonzero(region.any(axis=(0, 2))) + j_lo
    is_ = np.flatnonzero(region.any(axis=(0, 1))) + i_lo
    centre_kji = np.array(
        [(k_first + k_last) / 2, (js[0] + js[-1]) / 2, (is_[0] + is_[-1]) / 2], dtype=np.float64
    )
    spacing_in = np.array(grid.spacing_zyx)
    spacing_crop = np.array(settings.spacing_zyx_mm)
    crop = np.array(settings.crop_zyx)
    # crop index o -> volume index: centre + (o - (n - 1) / 2) * spacing_crop / spacing_in
    scale = spacing_crop / spacing_in
    offset = centre_kji - (crop - 1) / 2 * scale
    crop_shape = tuple(int(v) for v in crop)
    image = _resample(hu.astype(np.float32, copy=False), scale, offset, crop_shape, 1, AIR_HU)
    lab = _resample(labels, scale, offset, crop_shape, 0, 0)
    # the level's muscles only within the body's own cranio-caudal extent (Kong et al.)
    k_crop = np.arange(crop_shape[0]) * scale[0] + offset[0]
    in_level = (k_crop >= k_first - 0.5) & (k_crop <= k_last + 0.5)
    body_c = lab == lid
    muscle_c = _IS_MUSCLE[lab] & in_level[:, None, None]
    image = _scale(image, settings).astype(np.float32, copy=False)
    # resize: network index o -> crop index (o + 0.5) * crop / net - 0.5 (centres aligned)
    net = np.array(settings.network_zyx)
    net_shape = tuple(int(v) for v in net)
    r_scale = crop / net
    r_offset = 0.5 * r_scale - 0.5
    image = np.clip(_resample(image, r_scale, r_offset, net_shape, 1, 0.0), 0.0, 1.0)
    body_n = _resample(body_c.view(np.uint8), r_scale, r_offset, net_shape, 0, 0).astype(bool)
    muscle_n = _resample(muscle_c.view(np.uint8), r_scale, r_offset, net_shape, 0, 0).astype(bool)
    x, y, z = grid.to_patient(tuple(centre_kji))
    return LevelPatch(image=image, body=body_n, muscle=muscle_n & ~body_n, centre_xyz=(x, y, z))


def _store(image: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return np.rint(image * 255.0).astype(np.uint8)
    return image.astype(np.float16)


def build_inputs(
    hu: np.ndarray, segmentation: Segmentation, series_uid: str, settings: PreprocessingSettings
) -> ModelInputs:
    """The model inputs of one series (steps in the module doc).

    Parameters
    ----------
    hu : np.ndarray
        float32 HU, shape ``segmentation.grid.shape_zyx`` (``Volume.hu``).
    segmentation : Segmentation
        Bodies and muscles on the same grid.
    series_uid : str
    settings : PreprocessingSettings

    Returns
    -------
    ModelInputs
        Deterministic: the same inputs give identical arrays.
    """
    if hu.shape != segmentation.grid.shape_zyx:
        raise ValueError(f"hu {hu.shape} and segmentation {segmentation.grid.shape_zyx} differ")
    n = len(settings.levels)
    shape = (n, *settings.network_zyx)
    dtype = np.uint8 if settings.dtype == "uint8" else np.float16
    bone = np.zeros(shape, dtype=dtype)
    bone_muscle = np.zeros(shape, dtype=dtype)
    present = np.zeros(n, dtype=bool)
    centres = np.full((n, 3), np.nan)
    canal = np.full(n, np.nan, dtype=np.float32)
    readings = canal_hu(hu, segmentation)
    for row, level in enumerate(settings.levels):
        patch = level_patch(hu, segmentation, level, settings)
        if patch is None:
            continue
        present[row] = True
        centres[row] = patch.centre_xyz
        canal[row] = readings.get(level, np.nan)
        bone[row] = _store(np.where(patch.body, patch.image, 0.0), settings.dtype)
        keep = patch.body | patch.muscle
        bone_muscle[row] = _store(np.where(keep, patch.image, 0.0), settings.dtype)
    spacing = tuple(
        float(s * c / m)
        for s, c, m in zip(
            settings.spacing_zyx_mm, settings.crop_zyx, settings.network_zyx, strict=True
        )
    )
    return ModelInputs(
        series_uid=series_uid,
        preprocessing_version=settings.version,
        settings_digest=settings.digest(),
        levels=tuple(settings.levels),
        bone=bone,
        bone_muscle=bone_muscle,
        level_present=present,
        spacing_zyx_mm=spacing,  # type: ignore[arg-type]
        centres_xyz=centres,
        intensity=settings.intensity,
        hu_window=settings.hu_window if settings.intensity == "fixed_window" else None,
        canal_hu=canal,
    )


def cache_path(folder: Path | str, series_uid: str, version: str) -> Path:
    """``FOLDER/<series_uid>.<version>.npz`` (unsafe characters replaced by ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", series_uid)
    return Path(folder) / f"{safe}.{re.sub(r'[^A-Za-z0-9._-]', '_', version)}.npz"


def save_inputs(inputs: ModelInputs, folder: Path | str) -> Path:
    """Write ``inputs`` to :func:`cache_path` as a compressed ``.npz``; returns the path."""
    path = cache_path(folder, inputs.series_uid, inputs.preprocessing_version)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "series_uid": inputs.series_uid,
        "preprocessing_version": inputs.preprocessing_version,
        "settings_digest": inputs.settings_digest,
        "levels": list(inputs.levels),
        "spacing_zyx_mm": list(inputs.spacing_zyx_mm),
        "intensity": inputs.intensity,
        "hu_window": None if inputs.hu_window is None else list(inputs.hu_window),
    }
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp, meta=np.array(json.dumps(meta)), bone=inputs.bone, bone_muscle=inputs.bone_muscle,
        level_present=inputs.level_present, centres_xyz=inputs.centres_xyz,
        **{name: getattr(inputs, name) for name in READINGS},
    )  # fmt: skip
    tmp.replace(path)  # atomic: a crash never leaves half a cache file
    return path


def load_inputs(path: Path | str, settings: PreprocessingSettings | None = None) -> ModelInputs:
    """Read a cached :class:`ModelInputs`.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save_inputs`.
    settings : PreprocessingSettings, optional
        The current settings; a file made with another version or other settings is
        refused with ``preprocessing_mismatch``.
    """
    with np.load(Path(path), allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if settings is not None and (
            meta["preprocessing_version"] != settings.version
            or meta["settings_digest"] != settings.digest()
        ):
            raise VfriskError(
                "preprocessing_mismatch",
                f"{path} was made with preprocessing {meta['preprocessing_version']} "
                f"(settings {meta['settings_digest']}), the current configuration is "
                f"{settings.version} (settings {settings.digest()}); delete the cache or "
                "rebuild it",
            )
        names = ("bone", "bone_muscle", "level_present", "centres_xyz")
        arrays = {k: data[k] for k in names}
        # files made before pp5 (pp7, pp8) hold no canal (trabecular, height) reading
        for name in READINGS:
            arrays[name] = data[name] if name in data.files else None
    window = meta.get("hu_window")
    return ModelInputs(
        series_uid=meta["series_uid"],
        preprocessing_version=meta["preprocessing_version"],
        settings_digest=meta["settings_digest"],
        levels=tuple(meta["levels"]),
        spacing_zyx_mm=tuple(meta["spacing_zyx_mm"]),
        intensity=meta["intensity"],
        hu_window=None if window is None else tuple(window),
        **arrays,
    )
