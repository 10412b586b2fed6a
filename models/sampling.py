"""Slice triplets from a :class:`~engine.anatomy.inputs.ModelInputs`: the network's images.

Each level's patch has ``S`` axial slices (32 at the default ``network_zyx``, 2.25 mm
apart, centred on the vertebral body's cranio-caudal extent). A triplet is 3 adjacent
slices ``(c - 1, c, c + 1)`` read as the 3 channels of one 2D image, as in the study.

- Evaluation: :func:`eval_centres`, deterministic and centred: triplet centres at
  ``mid + (i - (K - 1) / 2) * spacing``, i = 0..K-1, the same for every level.
- Training: :func:`random_centres`, K centres per level drawn uniformly from the central
  ``window`` slices (sorted cranial to caudal), from a caller-seeded
  :class:`numpy.random.Generator`; the same generator state gives the same triplets.
- Intensity features (``ModelConfig.intensity_features``, issue 6):
  :func:`intensity_features` measures each whole level array (not the triplets, never
  augmented): the bone voxels' intensity and the body's size, and for ``bone_muscle``
  the muscle area and intensity, numbers the CNN learns only imprecisely from a few
  hundred patients.

Pure numpy; only :func:`to_batch` imports torch (lazily).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from engine.anatomy.inputs import ModelInputs
from models.config import ModelConfig

if TYPE_CHECKING:
    import torch

__all__ = [
    "REFERENCE_FEATURES",
    "ModelBatch",
    "TripletSample",
    "eval_centres",
    "feature_names",
    "intensity_features",
    "random_centres",
    "sample_triplets",
    "take_triplets",
    "to_batch",
]


#: The scan's internal HU reference, last column of every variant: the spinal canal's
#: median HU behind the body (``ModelInputs.canal_hu``) in the patch's [0, 1] scale; NaN
#: where it was not read or the patches have no fixed HU window. The network compares it
#: with its development site's reading, moves every ``_mean`` / ``_median`` column by the
#: difference and drops it (:meth:`models.network.FractureNet.calibrate`).
REFERENCE_FEATURES = ("canal_median",)


@dataclass(frozen=True)
class TripletSample:
    """The network's view of one series.

    Attributes
    ----------
    images : np.ndarray
        float32 in [0, 1], shape (n_levels, K, 3, H, W): K triplets per level.
    level_present : np.ndarray
        bool, shape (n_levels,); missing levels' images are all zero and are masked by
        the network.
    centres : np.ndarray
        int64, shape (n_levels, K): the middle slice of each triplet.
    series_uid : str
    features : np.ndarray or None
        float32, shape (n_levels, F): :func:`intensity_features` when the model has the
        intensity branch, else None.
    """

    images: np.ndarray
    level_present: np.ndarray
    centres: np.ndarray
    series_uid: str
    features: np.ndarray | None = None


class ModelBatch(NamedTuple):
    """Tensors of a batch of patients, ready for :class:`models.network.FractureNet`.

    Attributes
    ----------
    images : torch.Tensor
        float32, shape (B, n_levels, K, 3, H, W).
    level_present : torch.Tensor
        bool, shape (B, n_levels).
    features : torch.Tensor or None
        float32, shape (B, n_levels, F): intensity features, or None without the branch.
    """

    images: torch.Tensor
    level_present: torch.Tensor
    features: torch.Tensor | None = None


def _check(n_slices: int, k: int) -> None:
    if n_slices < 3:
        raise ValueError(f"a level patch needs >= 3 slices for a triplet, got {n_slices}")
    if k < 1:
        raise ValueError(f"triplets per level must be >= 1, got {k}")


def eval_centres(n_slices: int, k: int, spacing: int) -> np.ndarray:
    """Deterministic triplet centres, symmetric about the patch's middle slice.

    Parameters
    ----------
    n_slices : int
        Slices S of a level patch.
    k : int
        Triplets per level.
    spacing : int
        Slices between neighbouring centres.

    Returns
    -------
    np.ndarray
        int64, shape (k,), each in [1, S - 2] (a triplet never leaves the patch).
    """
    _check(n_slices, k)
    mid = (n_slices - 1) / 2
    centres = np.floor(mid + (np.arange(k) - (k - 1) / 2) * spacing + 0.5).astype(np.int64)
    return np.clip(centres, 1, n_slices - 2)


def random_centres(
    n_slices: int, n_levels: int, k: int, window: int, rng: np.random.Generator
) -> np.ndarray:
    """Random triplet centres for training, per level, from the central ``window`` slices.

    Parameters
    ----------
    n_slices : int
        Slices S of a level patch.
    n_levels, k : int
        Levels and triplets per level.
    window : int
        Width (slices) of the central range the centres are drawn from, clipped to the
        patch (centres stay in [1, S - 2]).
    rng : np.random.Generator
        Seeded by the caller.

    Returns
    -------
    np.ndarray
        int64, shape (n_levels, k), sorted along k (cranial first).
    """
    _check(n_slices, k)
    mid = (n_slices - 1) / 2
    lo = max(1, int(np.ceil(mid - (window - 1) / 2)))
    hi = min(n_slices - 2, max(lo, lo + window - 1))
    return np.sort(rng.integers(lo, hi + 1, size=(n_levels, k)), axis=1)


def take_triplets(volume: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Gather the triplets ``(c - 1, c, c + 1)`` of every level.

    Parameters
    ----------
    volume : np.ndarray
        shape (n_levels, S, H, W), float16 in [0, 1] or uint8 0-255.
    centres : np.ndarray
        int, shape (n_levels, K) or (K,) (the same for every level), in [1, S - 2].

    Returns
    -------
    np.ndarray
        float32 in [0, 1], shape (n_levels, K, 3, H, W).
    """
    n_levels = volume.shape[0]
    centres = np.asarray(centres, dtype=np.int64)
    if centres.ndim == 1:
        centres = np.broadcast_to(centres, (n_levels, centres.size))
    if centres.ndim != 2 or centres.min() < 1 or centres.max() > volume.shape[1] - 2:
        raise ValueError(f"triplet centres must lie in [1, {volume.shape[1] - 2}]")
    idx = centres[:, :, None] + np.arange(-1, 2)  # (L, K, 3)
    out = volume[np.arange(n_levels)[:, None, None], idx].astype(np.float32)
    if volume.dtype == np.uint8:
        out *= np.float32(1.0 / 255.0)
    return out


def feature_names(config: ModelConfig) -> tuple[str, ...]:
    """Names of the intensity features a model reads, in column order.

    Parameters
    ----------
    config : ModelConfig
        Its ``bone_features``; for ``input_variant = 'bone_muscle'`` then its
        ``muscle_features`` (the ``'bone'`` variant gets no muscle information, so the
        bone vs bone+muscle comparison stays honest); always last
        :data:`REFERENCE_FEATURES`.

    Returns
    -------
    tuple of str
    """
    muscle = tuple(config.muscle_features) if config.input_variant == "bone_muscle" else ()
    return tuple(config.bone_features) + muscle + REFERENCE_FEATURES


def _stats(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return 0.0, 0.0
    return float(values.mean()), float(np.median(values))


def intensity_features(inputs: ModelInputs, config: ModelConfig) -> np.ndarray:
    """Quantitative intensity features of every level, from the whole level arrays.

    Parameters
    ----------
    inputs : ModelInputs
        ``bone`` marks the body (its voxels are != 0), ``bone_muscle`` != 0 and ``bone``
        == 0 the level's muscles; intensities in the patch's [0, 1] scale (uint8 / 255).
        The in-plane pixel area and slice spacing come from ``spacing_zyx_mm``.
    config : ModelConfig
        Which features (:func:`feature_names`).

    Returns
    -------
    np.ndarray
        float32, shape (n_levels, F), columns as :func:`feature_names`; rows of missing
        levels are 0 (the network masks them); ``canal_median`` is NaN where the canal
        was not read or ``inputs.hu_window`` is None.

    Raises
    ------
    ValueError
        For ``'bone_muscle'``, a present level whose ``bone`` array is empty while
        ``bone_muscle`` is not: the bone array was dropped (``models.data.load_examples``
        with ``variant``), and the muscle could not be told from the bone.
    """
    names = feature_names(config)
    bone_names = tuple(config.bone_features)
    n_levels = inputs.bone.shape[0]
    out = np.zeros((n_levels, len(names)), dtype=np.float32)
    scale = np.float32(1.0 / 255.0) if inputs.bone.dtype == np.uint8 else np.float32(1.0)
    dz_mm, dy_mm, dx_mm = inputs.spacing_zyx_mm
    pixel_cm2 = dy_mm * dx_mm / 100.0
    if inputs.hu_window is None:
        canal = trabecular = np.full(n_levels, np.nan, dtype=np.float32)
    else:
        lo, hi = inputs.hu_window
        canal, trabecular = (
            ((np.asarray(v, np.float64) - lo) / (hi - lo)).astype(np.float32)
            for v in (inputs.canal_hu, inputs.trabecular_hu)
        )
    for level in np.flatnonzero(inputs.level_present):
        out[level, -1] = canal[level]
        bone = inputs.bone[level].astype(np.float32) * scale
        body = bone != 0
        body_slices = int(body.any(axis=(1, 2)).sum())
        values = bone[body]
        mean, median = _stats(values)
        per_slice = pixel_cm2 / max(body_slices, 1)
        measured = {
            "bone_mean": mean,
            "bone_median": median,
            "bone_sd": float(values.std()) if values.size else 0.0,
            "body_area_cm2": body.sum() * per_slice,
            "body_height_cm": body_slices * dz_mm / 10.0,
            "trabecular_mean": trabecular[level] if np.isfinite(trabecular[level]) else mean,
            "height_loss": float(np.nan_to_num(inputs.height_loss[level], nan=0.0)),
        }
        out[level, : len(bone_names)] = [measured[n] for n in bone_names]
        if config.input_variant != "bone":
            both = inputs.bone_muscle[level].astype(np.float32) * scale
            if not body.any() and both.any():
                raise ValueError(
                    f"series {inputs.series_uid}, level {level}: the bone array is empty but "
                    "bone_muscle is not (an array dropped to save memory?); the muscle "
                    "features need both (load_examples(config=...) measures them first)"
                )
            muscle = both[(both != 0) & ~body]
            m_mean, m_median = _stats(muscle)
            measured = {
                "muscle_area_cm2": muscle.size * per_slice,
                "muscle_mean": m_mean,
                "muscle_median": m_median,
            }
            out[level, len(bone_names) : -1] = [measured[n] for n in config.muscle_features]
    return out


def sample_triplets(
    inputs: ModelInputs,
    config: ModelConfig,
    rng: np.random.Generator | None = None,
    features: np.ndarray | None = None,
) -> TripletSample:
    """The images of one series for the network.

    Parameters
    ----------
    inputs : ModelInputs
        Its ``bone`` or ``bone_muscle`` array is used, by ``config.input_variant``.
    config : ModelConfig
        ``n_levels``, ``triplets_per_level``, ``triplet_spacing``, ``train_window``;
        ``intensity_features`` adds :func:`intensity_features` of the variant.
    rng : np.random.Generator, optional
        None: deterministic centred triplets (evaluation). A generator: random triplets
        (training), reproducible from its seed.
    features : np.ndarray, optional
        ``intensity_features(inputs, config)`` when the caller has them
        (training measures each series once, not every epoch).

    Returns
    -------
    TripletSample
    """
    volume = inputs.bone if config.input_variant == "bone" else inputs.bone_muscle
    n_levels, n_slices = volume.shape[:2]
    if n_levels != config.n_levels:
        raise ValueError(
            f"series {inputs.series_uid} has {n_levels} levels, the model expects {config.n_levels}"
        )
    k = config.triplets_per_level
    if rng is None:
        centres = np.tile(eval_centres(n_slices, k, config.triplet_spacing), (n_levels, 1))
    else:
        centres = random_centres(n_slices, n_levels, k, config.train_window, rng)
    return TripletSample(
        images=take_triplets(volume, centres),
        level_present=np.asarray(inputs.level_present, dtype=bool).copy(),
        centres=centres,
        series_uid=inputs.series_uid,
        features=(
            None
            if not config.intensity_features
            else features
            if features is not None
            else intensity_features(inputs, config)
        ),
    )


def to_batch(samples: Sequence[TripletSample], device: str | torch.device = "cpu") -> ModelBatch:
    """Stack samples into tensors on ``device``.

    Parameters
    ----------
    samples : sequence of TripletSample
        Same shapes; each with at least one present level; all with features or none.
    device : str or torch.device

    Returns
    -------
    ModelBatch
    """
    import torch

    if not samples:
        raise ValueError("to_batch needs at least one sample")
    for s in samples:
        if not s.level_present.any():
            raise ValueError(f"series {s.series_uid} has no present level: it cannot be scored")
    images = torch.from_numpy(np.stack([s.images for s in samples]))
    present = torch.from_numpy(np.stack([s.level_present for s in samples]))
    with_features = [s.features is not None for s in samples]
    if any(with_features) and not all(with_features):
        raise ValueError("to_batch: some samples have intensity features and some do not")
    features = (
        torch.from_numpy(np.stack([s.features for s in samples])).to(device)  # type: ignore[misc]
        if all(with_features)
        else None
    )
    return ModelBatch(images=images.to(device), level_present=present.to(device), features=features)
