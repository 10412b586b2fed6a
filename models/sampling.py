"""Slice triplets from a :class:`~engine.anatomy.inputs.ModelInputs`: the network's images.

Each level's patch has ``S`` axial slices (32 at the default ``network_zyx``, 2.25 mm
apart, centred on the vertebral body's cranio-caudal extent). A triplet is 3 adjacent
slices ``(c - 1, c, c + 1)`` read as the 3 channels of one 2D image, as in the study.

- Evaluation: :func:`eval_centres`, deterministic and centred: triplet centres at
  ``mid + (i - (K - 1) / 2) * spacing``, i = 0..K-1, the same for every level.
- Training: :func:`random_centres`, K centres per level drawn uniformly from the central
  ``window`` slices (sorted cranial to caudal), from a caller-seeded
  :class:`numpy.random.Generator`; the same generator state gives the same triplets.

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
    "ModelBatch",
    "TripletSample",
    "eval_centres",
    "random_centres",
    "sample_triplets",
    "take_triplets",
    "to_batch",
]


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
    """

    images: np.ndarray
    level_present: np.ndarray
    centres: np.ndarray
    series_uid: str


class ModelBatch(NamedTuple):
    """Tensors of a batch of patients, ready for :class:`models.network.FractureNet`.

    Attributes
    ----------
    images : torch.Tensor
        float32, shape (B, n_levels, K, 3, H, W).
    level_present : torch.Tensor
        bool, shape (B, n_levels).
    """

    images: torch.Tensor
    level_present: torch.Tensor


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


def sample_triplets(
    inputs: ModelInputs, config: ModelConfig, rng: np.random.Generator | None = None
) -> TripletSample:
    """The images of one series for the network.

    Parameters
    ----------
    inputs : ModelInputs
        Its ``bone`` or ``bone_muscle`` array is used, by ``config.input_variant``.
    config : ModelConfig
        ``n_levels``, ``triplets_per_level``, ``triplet_spacing``, ``train_window``.
    rng : np.random.Generator, optional
        None: deterministic centred triplets (evaluation). A generator: random triplets
        (training), reproducible from its seed.

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
    )


def to_batch(samples: Sequence[TripletSample], device: str | torch.device = "cpu") -> ModelBatch:
    """Stack samples into tensors on ``device``.

    Parameters
    ----------
    samples : sequence of TripletSample
        Same shapes; each with at least one present level.
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
    return ModelBatch(images=images.to(device), level_present=present.to(device))
