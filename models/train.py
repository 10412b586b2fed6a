"""``vfrisk train``: the fracture network on a development site, a checkpoint and its card.

What one call of :func:`train` does (issue 6, "Training"; Kong et al. 2025):

1. :func:`models.data.build_cache` prepares every linked patient's index scan once (all
   sites: the external ones are evaluated in the card) and caches the model inputs.
2. The training site(s) (``sites``, the development site) are split, stratified by
   prevalent and incident fracture and seeded, into training and validation
   (``val_fraction``), or into ``folds`` for k-fold cross-validation.
3. Each epoch: stratified batches (:func:`models.data.stratified_batches`), random slice
   triplets per patient (:func:`models.sampling.sample_triplets` with the seeded
   generator), the study's augmentation on the batch in torch (small rotation, scaling
   and shift, left-right flip, one transform per patient for all its images; optional
   scanner blur, noise and HU offset), the detection BCE on ``prevalent_vf`` and the
   survival loss (:func:`models.losses.survival_loss`: the discrete-time likelihood or
   Mirai's yearly BCE) on ``followup_years``/``event_type``, combined by the configured
   weighting (:func:`models.weighting.multitask_backward`), AdamW. On CUDA under bf16 autocast with
   channels_last; on CPU in float32 with deterministic algorithms: the same seed gives
   identical weights.
4. After each epoch the validation patients are scored through
   :func:`models.inference.predict` (the one scoring path); the epoch with the best
   Harrell c-index of the 5-year risk (validation AUROC for detection-only models; with
   ``select = 'mean'`` the mean of c-index and detection AUROC) is kept; ``patience``
   epochs without improvement stop the run.
5. The checkpoint (:func:`models.checkpoint.save_checkpoint`) and the model card
   (:mod:`models.card`: internal validation and each external site, with CIs) are
   written. With k folds the internal metrics pool each fold's out-of-fold predictions
   (every patient scored by the model that did not train on it) and the fold with the
   best validation metric is the one saved.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.anatomy.inputs import PreprocessingSettings
from engine.errors import VfriskError
from engine.evaluation import SurvivalTarget, auroc, harrell_c
from engine.prepare import PrepareFailure
from models import recalibration
from models.card import (
    build_card,
    calibration_summary,
    find_cohort_manifest,
    metrics_for,
    write_card,
)
from models.checkpoint import save_checkpoint
from models.config import ModelConfig
from models.data import (
    Example,
    LoadedInputs,
    build_cache,
    build_thick_cache,
    fracture_strata,
    load_examples,
    make_batch,
    stratified_batches,
)
from models.inference import Prediction, predict
from models.losses import SURVIVAL_LOSSES, detection_loss, survival_loss
from models.network import FractureNet
from models.sampling import feature_names
from models.weighting import make_weighting, multitask_backward

__all__ = [
    "RECIPES",
    "Augmentation",
    "IntensityDraws",
    "TrainRequest",
    "TrainResult",
    "augment_features",
    "augment_images",
    "split_indices",
    "train",
]

#: Overrides of ``[train]`` per recipe. ``convnext_tiny``: the study's recipe for a GPU.
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "convnext_tiny": {
        "width": 96, "depth": [3, 3, 9, 3], "epochs": 60, "batch_size": 64, "lr": 1e-4,
        "folds": 5,
    },
}  # fmt: skip
_DEVICES = ("auto", "cpu", "cuda")
_SELECT = ("c_index", "mean")
#: Parts of the validation patients for the cross-fitted internal calibration.
_RECALIBRATION_PARTS = 5


def _bad(message: str) -> VfriskError:
    return VfriskError("bad_argument", message)


_NON_NEGATIVE = ("rotate_deg", "scale", "shift", "blur_sigma", "noise_sd", "offset", "thick_mm")


@dataclass(frozen=True)
class Augmentation:
    """Per-patient augmentation: the study's affine and flip, plus scanner variation.

    The study augments with a small affine and a left-right flip only. A model trained on
    one site then learns that site's scanner: its noise, sharpness and HU calibration
    (with the encoder's LayerNorms, relative noise is even its cue to bone density,
    README, "The model"). ``blur_sigma``, ``noise_sd`` and ``offset`` vary them; all three are
    drawn per patient and applied to the tissue (non-zero) pixels only, so the masks'
    zeros stay zero.

    Attributes
    ----------
    enabled : bool
    rotate_deg : float
        Rotation drawn uniformly in [-rotate_deg, rotate_deg] degrees (in-plane, square
        pixels).
    scale : float
        Zoom factor drawn in [1 - scale, 1 + scale].
    shift : float
        Shift drawn in [-shift, shift] of the image size, per axis.
    flip_p : float
        Probability of a left-right flip.
    blur_sigma : float
        In-plane Gaussian blur, SD drawn in [0, blur_sigma] pixels (reconstruction
        kernels); normalised within the tissue, so the mask's edge does not darken.
    noise_sd : float
        Gaussian noise, SD drawn in [0, noise_sd], in input units (the share of the HU
        window: 0.0125 = 15 HU of the default -200..1000 HU window).
    offset : float
        Intensity offset drawn in [-offset, offset] input units (HU calibration); the
        intensity features' means and medians move with it.
    thick_mm : float
        Thick-slice views (0 = off): each training patient's series is also prepared as
        a reconstruction of slices about this thick (:func:`engine.prepare.thick_view`,
        through the whole anatomy stage: segmentation, patches, biomarkers), and every
        epoch each patient is seen through that view with probability ``thick_p``. A
        development site of thin slices then teaches the network what its patients look
        like at a thick-slice site. Validation uses the series as stored.
    thick_p : float
        Probability of the thick-slice view per patient and epoch.
    """

    enabled: bool = True
    rotate_deg: float = 10.0
    scale: float = 0.1
    shift: float = 0.05
    flip_p: float = 0.5
    blur_sigma: float = 1.0
    noise_sd: float = 0.0125
    offset: float = 0.01
    thick_mm: float = 0.0
    thick_p: float = 0.5

    def __post_init__(self) -> None:
        for name in _NON_NEGATIVE:
            if not getattr(self, name) >= 0:
                raise _bad(f"train: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("flip_p", "thick_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise _bad(f"train: {name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def thick(self) -> bool:
        """Whether training uses thick-slice views."""
        return self.enabled and self.thick_mm > 0 and self.thick_p > 0


@dataclass(frozen=True)
class IntensityDraws:
    """The per-patient scanner draws of one :func:`augment_images` call, shape (B,) each."""

    noise_sd: torch.Tensor
    offset: torch.Tensor


def augment_images(
    images: torch.Tensor, aug: Augmentation, generator: torch.Generator
) -> tuple[torch.Tensor, IntensityDraws]:
    """One random transform per patient, the same for all its images.

    Parameters
    ----------
    images : torch.Tensor
        shape (B, n_levels, K, 3, H, W), values in [0, 1].
    aug : Augmentation
    generator : torch.Generator
        A CPU generator, seeded by the caller (the same state gives the same transforms).

    Returns
    -------
    images : torch.Tensor
        Same shape, dtype and device; outside the source image and the tissue is 0, so a
        missing (all-zero) level stays zero.
    draws : IntensityDraws
        Noise SD and offset of each patient (zeros when disabled), for
        :func:`augment_features`.
    """
    import torch.nn.functional as F

    b, n_levels, k, c, h, w = images.shape
    if not aug.enabled:
        zero = torch.zeros(b, dtype=torch.float64)
        return images, IntensityDraws(noise_sd=zero, offset=zero)

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1

    angle = uniform(b) * math.radians(aug.rotate_deg)
    zoom = 1 + uniform(b) * aug.scale
    shift = uniform(b, 2) * aug.shift * 2  # normalised coordinates span 2 per image
    flip = torch.rand(b, generator=generator, dtype=torch.float64) < aug.flip_p
    # drawn only when asked for, after the affine draws: a run without them draws the
    # same transforms as before they existed (same seed, same weights)
    scanner = aug.blur_sigma > 0 or aug.noise_sd > 0 or aug.offset > 0
    blur, noise, offset = (
        ((uniform(b) + 1) / 2 * aug.blur_sigma, (uniform(b) + 1) / 2 * aug.noise_sd,
         uniform(b) * aug.offset)
        if scanner
        else (torch.zeros(b, dtype=torch.float64),) * 3
    )  # fmt: skip
    fx = torch.where(flip, -1.0, 1.0).to(torch.float64)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # rotation in pixel space, written in affine_grid's normalised coordinates
    # (x / (W / 2), y / (H / 2)): off-diagonal terms scale by the aspect ratio
    theta = torch.stack(
        [
            torch.stack([cos * fx, -sin * (h / w), shift[:, 0]], dim=1),
            torch.stack([sin * (w / h) * fx, cos, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    flat = images.flatten(0, 2)
    per_image = n_levels * k
    if scanner:
        # the scanner first, on the stored image whose zeros are exactly the outside
        flat = _scanner(flat, aug, per_image, blur, noise, offset, generator)
    theta = theta.repeat_interleave(per_image, dim=0).to(flat.device, flat.dtype)
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.unflatten(0, (b, n_levels, k)), IntensityDraws(noise_sd=noise, offset=offset)


def _scanner(
    flat: torch.Tensor,
    aug: Augmentation,
    per_image: int,
    blur: torch.Tensor,
    noise: torch.Tensor,
    offset: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Blur, noise and offset of each patient on the tissue (non-zero) pixels of ``flat``."""
    tissue = flat != 0
    out = flat
    if aug.blur_sigma > 0:
        out = _blur_tissue(out, tissue, blur.repeat_interleave(per_image))
    if aug.noise_sd > 0:
        sd = noise.repeat_interleave(per_image).to(out.device, out.dtype)
        gauss = torch.randn(out.shape, generator=generator, dtype=torch.float32)
        out = out + gauss.to(out.device, out.dtype) * sd[:, None, None, None]
    if aug.offset > 0:
        out = (
            out + offset.repeat_interleave(per_image).to(out.device, out.dtype)[:, None, None, None]
        )
    return torch.where(tissue, out.clamp(0.0, 1.0), torch.zeros_like(out))


def _blur_tissue(x: torch.Tensor, tissue: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable in-plane Gaussian of SD ``sigma[i]`` pixels per image, within ``tissue``.

    Normalised convolution (blur of the masked image / blur of the mask): pixels next to
    the mask's edge average tissue only, so the edge keeps its intensity.
    """
    import torch.nn.functional as F

    n, c, h, w = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    s = sigma.clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None, :] / s) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(x.device, x.dtype)
    kernel = kernel.repeat_interleave(c, dim=0)  # (n * c, taps): one kernel per channel

    def smooth(v: torch.Tensor) -> torch.Tensor:
        v = v.reshape(1, n * c, h, w)
        v = F.conv2d(v, kernel[:, None, None, :], padding=(0, radius), groups=n * c)
        v = F.conv2d(v, kernel[:, None, :, None], padding=(radius, 0), groups=n * c)
        return v.reshape(n, c, h, w)

    m = tissue.to(x.dtype)
    return smooth(x * m) / smooth(m).clamp_min(1e-6)


def augment_features(
    features: torch.Tensor, names: Sequence[str], draws: IntensityDraws
) -> torch.Tensor:
    """Move the intensity features with the scanner draws of their patients' images.

    Parameters
    ----------
    features : torch.Tensor
        float, shape (B, n_levels, F): :func:`models.sampling.intensity_features`.
    names : sequence of str
        The F column names (:func:`models.sampling.feature_names`).
    draws : IntensityDraws
        From the :func:`augment_images` call of the same batch.

    Returns
    -------
    torch.Tensor
        A copy: means and medians + offset, the bone SD combined with the added noise
        (``sqrt(sd**2 + noise**2)``); areas and heights unchanged.
    """
    out = features.clone()
    offset = draws.offset.to(out.device, out.dtype)[:, None]
    noise = draws.noise_sd.to(out.device, out.dtype)[:, None]
    for j, name in enumerate(names):
        if name.endswith(("_mean", "_median")):
            out[..., j] += offset
        elif name == "bone_sd":
            out[..., j] = torch.sqrt(out[..., j] ** 2 + noise**2)
    return out


@dataclass(frozen=True)
class TrainRequest:
    """Everything one training run needs (see the module doc).

    Attributes
    ----------
    db : Path
        DuckDB file with ``vfrisk index`` and ``vfrisk import-clinical`` done.
    out : Path
        Checkpoint file (``.pt``); the card goes beside it (``NAME.card.json``/``.md``).
    model : ModelConfig
    cache_dir : Path or None
        Cached inputs; None = ``<DB stem>.cache`` beside the database.
    sites : tuple of str
        Training (development) sites; other sites are external.
    epochs, batch_size, lr, weight_decay, seed, val_fraction, patience : as named
    folds : int or None
        k-fold cross-validation (k >= 2); None = one split by ``val_fraction``.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    workers : int
        Processes preparing uncached series.
    preprocessing : PreprocessingSettings or None
        None = the configuration's ``[preprocessing]``.
    augmentation : Augmentation
    min_events : int
        Fewest prevalent / incident fractures among the training-site patients.
    cohort : Path or None
        The synthetic cohort folder (for its manifest in the card) when the archive
        paths do not lead to it.
    command : str
        The exact command line, recorded in the checkpoint and the card.
    recipe : str
        Name of the recipe the values came from (recorded).
    select : str
        Validation metric that picks the epoch (``c_index`` or ``mean``).
    survival_loss : str
        ``likelihood`` or ``bce`` (:func:`models.losses.survival_loss`).
    recalibrate : bool
        Fit the risk's recalibration on the validation patients (:mod:`models.recalibration`).
    ema_decay : float
        0 (default): validation, epoch selection and the saved weights use the network as
        trained. In (0, 1): they use an exponential moving average of its weights, updated
        after every optimiser step with decay ``min(ema_decay, (1 + t) / (10 + t))`` at
        step t (:class:`_WeightAverage`).
    """

    db: Path
    out: Path
    model: ModelConfig = field(default_factory=ModelConfig)
    cache_dir: Path | None = None
    sites: tuple[str, ...] = ("dev",)
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    val_fraction: float = 0.2
    folds: int | None = None
    patience: int = 15
    device: str = "auto"
    workers: int = 1
    preprocessing: PreprocessingSettings | None = None
    augmentation: Augmentation = field(default_factory=Augmentation)
    min_events: int = 10
    cohort: Path | None = None
    command: str = ""
    recipe: str = "default"
    select: str = "c_index"
    survival_loss: str = "likelihood"
    recalibrate: bool = True
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "workers", "min_events"):
            if getattr(self, name) < 1:
                raise _bad(f"train: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise _bad(f"train: val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.folds is not None and self.folds < 2:
            raise _bad(f"train: folds must be >= 2 (or none), got {self.folds}")
        if self.device not in _DEVICES:
            raise _bad(f"train: device must be one of {_DEVICES}, got {self.device!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise _bad("train: lr must be > 0 and weight_decay >= 0")
        if not self.sites:
            raise _bad("train: give at least one training site")
        if not 0.0 <= self.ema_decay < 1.0:
            raise _bad(f"train: ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if self.select not in _SELECT:
            raise _bad(f"train: select must be one of {_SELECT}, got {self.select!r}")
        if self.survival_loss not in SURVIVAL_LOSSES:
            raise _bad(
                f"train: survival_loss must be one of {SURVIVAL_LOSSES}, got {self.survival_loss!r}"
            )

    @classmethod
    def from_config(cls, config: Any, *, db: Path, **overrides: Any) -> TrainRequest:
        """``[train]`` of ``config``, then the recipe, then ``overrides`` (None = unset).

        Override keys are those of ``[train]`` (``variant``, ``task``, ``weighting``,
        ``epochs`` ...) plus ``cohort`` and ``command``.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        values = dict(config["train"])
        recipe = given.get("recipe", values["recipe"])
        if recipe not in RECIPES:
            raise _bad(f"train: recipe {recipe!r} is not one of {sorted(RECIPES)}")
        values.update(RECIPES[recipe])
        values.update(given)
        unknown = sorted(set(values) - set(config["train"]) - {"cohort", "command"})
        if unknown:
            raise _bad(f"train: unknown options {unknown}")
        model = ModelConfig(
            input_variant=values["variant"], task=values["task"],
            weighting=values["weighting"], width=int(values["width"]),
            depth=tuple(int(d) for d in values["depth"]),
            triplets_per_level=int(values["triplets_per_level"]),
            triplet_spacing=int(values["triplet_spacing"]),
            dropout=float(values["dropout"]),
            n_levels=len(config["preprocessing"]["levels"]),
            intensity_features=bool(values["intensity_features"]),
            bone_features=tuple(str(f) for f in values["bone_features"]),
            muscle_features=tuple(str(f) for f in values["muscle_features"]),
            hazard_activation=str(values["hazard_activation"]),
        )  # fmt: skip
        cache = values["cache_dir"]
        workers = int(values["workers"]) or max(1, min(8, _cpu_count()))
        return cls(
            db=Path(db),
            out=Path(values["out"]),
            model=model,
            cache_dir=Path(cache) if cache else None,
            sites=tuple(values["sites"]),
            epochs=int(values["epochs"]),
            batch_size=int(values["batch_size"]),
            lr=float(values["lr"]),
            weight_decay=float(values["weight_decay"]),
            seed=int(values["seed"]),
            val_fraction=float(values["val_fraction"]),
            folds=int(values["folds"]) or None,
            patience=int(values["patience"]),
            device=str(values["device"]),
            workers=workers,
            augmentation=Augmentation(
                enabled=bool(values["augment"]),
                rotate_deg=float(values["rotate_deg"]),
                scale=float(values["scale"]),
                shift=float(values["shift"]),
                flip_p=float(values["flip_p"]),
                blur_sigma=float(values["blur_sigma"]),
                noise_sd=float(values["noise_sd"]),
                offset=float(values["offset"]),
                thick_mm=float(values["thick_mm"]),
                thick_p=float(values["thick_p"]),
            ),  # fmt: skip
            min_events=int(values["min_events"]),
            cohort=None if values.get("cohort") is None else Path(values["cohort"]),
            command=str(values.get("command", "")),
            recipe=recipe,
            select=str(values["select"]),
            survival_loss=str(values["survival_loss"]),
            recalibrate=bool(values["recalibrate"]),
            ema_decay=float(values["ema_decay"]),
        )

    def hyperparameters(self) -> dict[str, Any]:
        """JSON-ready training settings for the checkpoint and the card."""
        return {
            "recipe": self.recipe, "sites": list(self.sites), "epochs": self.epochs,
            "batch_size": self.batch_size, "optimizer": "AdamW", "lr": self.lr,
            "weight_decay": self.weight_decay, "seed": self.seed,
            "val_fraction": self.val_fraction, "folds": self.folds, "patience": self.patience,
            "min_events": self.min_events, "select": self.select,
            "survival_loss": self.survival_loss, "recalibrate": self.recalibrate,
            "ema_decay": self.ema_decay,
            "augmentation": dataclasses.asdict(self.augmentation),
            "batches": "stratified by prevalent x incident fracture (cohort proportions)",
        }  # fmt: skip


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` wrote and measured.

    Attributes
    ----------
    checkpoint : Path
    model_id : str
    card : dict
        The model card (also in ``card_json`` / ``card_md``).
    card_json, card_md : Path
    best_epoch : int
        1-based epoch of the saved weights.
    val_metrics : dict
        Internal validation metrics (:func:`models.card.metrics_for`).
    seconds : float
        Wall time of the whole call.
    failures : tuple of PrepareFailure
        Series that could not be prepared (skipped).
    """

    checkpoint: Path
    model_id: str
    card: dict[str, Any]
    card_json: Path
    card_md: Path
    best_epoch: int
    val_metrics: dict[str, Any]
    seconds: float
    failures: tuple[PrepareFailure, ...]


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise _bad("train: --device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def split_indices(
    examples: Sequence[Example], *, horizon: int, seed: int, val_fraction: float, folds: int | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, seeded (train, validation) index pairs: one split or k folds.

    Strata are prevalent fracture x incident fracture within ``horizon`` years; within
    each, patients are shuffled and dealt to folds in turn (k-fold) or the first
    ``round(val_fraction * n_stratum)`` (at least 1 of a stratum of 2 or more) go to
    validation.
    """
    rng = np.random.default_rng([seed, 1])
    strata = fracture_strata(examples, horizon)
    n = len(examples)
    fold_of = np.empty(n, dtype=np.int64)
    k = folds or 0
    val = np.zeros(n, dtype=bool)
    offset = 0
    for s in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == s))
        if k:
            fold_of[members] = (np.arange(members.size) + offset) % k
            offset += members.size  # continue dealing where the last stratum stopped
        else:
            # at least one of every stratum of two or more, so small sets keep events
            n_val = int(round(val_fraction * members.size))
            val[members[: max(n_val, 1 if members.size >= 2 else 0)]] = True
    if k:
        return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]
    return [(np.flatnonzero(~val), np.flatnonzero(val))]


def _check_events(
    examples: Sequence[Example], model: ModelConfig, min_events: int, what: str
) -> None:
    prevalent = sum(e.prevalent_vf == 1 for e in examples)
    incident = sum(e.event == 1 and e.followup_years < model.max_followup for e in examples)
    if model.has_detection and prevalent < min_events:
        raise VfriskError(
            "too_few_events",
            f"{what} has {prevalent} patients with a prevalent vertebral fracture "
            f"(prevalent_vf = 1); at least {min_events} are needed to train detection. Add "
            "patients, or lower [train] min_events",
        )
    if model.has_survival and incident < min_events:
        raise VfriskError(
            "too_few_events",
            f"{what} has {incident} incident vertebral fractures within {model.max_followup} "
            f"years (event_type = 1); at least {min_events} are needed to train the survival "
            "head. Add patients, or lower [train] min_events",
        )


def _selection_metric(
    model: ModelConfig, examples: Sequence[Example], preds: Sequence[Prediction], select: str
) -> float:
    """Validation metric of an epoch (higher is better); NaN when undefined.

    ``c_index``: Harrell's c-index of the 5-year risk (the study), or the detection AUROC
    for a detection-only model. ``mean``: for multitask models the mean of both.
    """
    c = auc = math.nan
    try:
        if model.has_survival:
            target = SurvivalTarget.from_arrays(
                [e.followup_years for e in examples], [e.event for e in examples]
            )
            h = min(5, model.max_followup)
            risk = [p.risk[h - 1] for p in preds]  # type: ignore[index]
            c = float(harrell_c(target, risk, ci="none").estimate)
        if model.has_detection and (select == "mean" or not model.has_survival):
            keep = [i for i, e in enumerate(examples) if e.prevalent_vf is not None]
            y = [examples[i].prevalent_vf for i in keep]
            auc = float(auroc(y, [preds[i].p_fracture for i in keep]).estimate)
    except VfriskError:
        return math.nan
    if not model.has_survival:
        return auc
    if select == "mean" and model.has_detection:
        return (c + auc) / 2
    return c


@dataclass
class _Fit:
    state: dict[str, torch.Tensor]
    best_epoch: int
    best_metric: float
    history: list[dict[str, float]]
    val_predictions: list[Prediction]


class _WeightAverage:
    """Exponential moving average of a network's floating-point parameters.

    ``update`` after each optimiser step moves the average toward the parameters with decay
    ``min(decay, (1 + t) / (10 + t))`` at step t (a short warm-up: the first steps are not
    averaged with the random initialisation); ``network()`` is a copy of the network
    carrying the averaged weights and the network's current buffers.
    """

    def __init__(self, model: FractureNet, decay: float) -> None:
        self.model = model
        self.decay = decay
        self.steps = 0
        self.average = copy.deepcopy(model)
        self.average.requires_grad_(False)

    def update(self) -> None:
        self.steps += 1
        d = min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        with torch.no_grad():
            pairs = zip(self.average.parameters(), self.model.parameters(), strict=True)
            for mine, theirs in pairs:
                if mine.is_floating_point():
                    mine.lerp_(theirs, 1.0 - d)

    def network(self) -> FractureNet:
        for mine, theirs in zip(self.average.buffers(), self.model.buffers(), strict=True):
            mine.copy_(theirs)
        return self.average


def _fit(
    request: TrainRequest,
    train_ex: Sequence[Example],
    train_in: LoadedInputs,
    val_ex: Sequence[Example],
    val_in: LoadedInputs,
    device: torch.device,
    fold: int,
    log: Callable[[str], None],
    train_thick: LoadedInputs | None = None,
) -> _Fit:
    config = request.model
    cuda = device.type == "cuda"
    torch.manual_seed(request.seed + 1000 * fold)
    rng = np.random.default_rng([request.seed, fold, 2])
    aug_gen = torch.Generator().manual_seed(request.seed + 1000 * fold + 3)
    # its own stream: a run without thick-slice views draws what it drew before they existed
    view_rng = np.random.default_rng([request.seed, fold, 4])
    model = FractureNet(config)
    feats = train_in.features  # measured once at load, not in every epoch's batches
    if feats is not None:
        present = np.stack([x.level_present for x in train_in.inputs])
        model.fit_feature_scaling(torch.from_numpy(feats), torch.from_numpy(present))
    model = model.to(device)
    if cuda:
        model.to_channels_last()
    weighting = make_weighting(config, seed=request.seed + fold)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "embedding" not in n)]
    groups = [
        {"params": decay, "weight_decay": request.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if isinstance(weighting, torch.nn.Module):
        weighting.to(device)
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=request.lr)
    average = _WeightAverage(model, request.ema_decay) if request.ema_decay > 0 else None
    best = _Fit(state={}, best_epoch=0, best_metric=-math.inf, history=[], val_predictions=[])
    stale = 0
    for epoch in range(1, request.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        losses_sum = np.zeros(2)
        steps = 0
        batches = stratified_batches(train_ex, request.batch_size, config.max_followup, rng)
        inputs, epoch_feats = train_in.inputs, feats
        if train_thick is not None:
            thick = view_rng.random(len(inputs)) < request.augmentation.thick_p
            inputs = [
                t if u else x for x, t, u in zip(inputs, train_thick.inputs, thick, strict=True)
            ]
            if feats is not None and train_thick.features is not None:
                epoch_feats = np.where(thick[:, None, None], train_thick.features, feats)
        for index in batches:
            tb = make_batch(train_ex, inputs, index, config, rng, device, epoch_feats)
            images, draws = augment_images(tb.batch.images, request.augmentation, aug_gen)
            features = tb.batch.features
            if features is not None:
                features = augment_features(features, feature_names(config), draws)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                out = model(images, tb.batch.level_present, features)
            losses = []
            if config.has_detection:
                known = tb.prevalent_known
                logit = out.fracture_logit[known]  # type: ignore[index]
                losses.append(
                    detection_loss(logit, tb.prevalent[known])
                    if bool(known.any())
                    else out.fracture_logit.sum() * 0.0  # type: ignore[union-attr]
                )
            if config.has_survival:
                losses.append(
                    survival_loss(out.risk_logit, tb.y_seq, tb.mask, request.survival_loss)  # type: ignore[arg-type]
                )
            opt.zero_grad(set_to_none=True)
            multitask_backward(weighting, losses, model)
            opt.step()
            if average is not None:
                average.update()
            for i, loss in enumerate(losses):
                losses_sum[i] += float(loss.detach())
            steps += 1
        evaluated = model if average is None else average.network()
        preds = predict(evaluated, val_in.inputs, device=device, features=val_in.features)
        metric = _selection_metric(config, val_ex, preds, request.select)
        mean = losses_sum / max(steps, 1)
        seconds = time.perf_counter() - t0
        best.history.append(
            {"epoch": epoch, "loss_a": float(mean[0]), "loss_b": float(mean[1]),
             "val_metric": metric, "seconds": seconds}
        )  # fmt: skip
        improved = metric > best.best_metric or not best.state
        if improved:
            state = evaluated.state_dict()
            best.state = {k: v.detach().cpu().clone() for k, v in state.items()}
            best.best_epoch = epoch
            best.best_metric = metric if not math.isnan(metric) else -math.inf
            best.val_predictions = preds
            stale = 0
        else:
            stale += 1
        tag = f"fold {fold + 1} " if request.folds else ""
        log(
            f"  {tag}epoch {epoch:3d}  loss {' / '.join(f'{v:.4f}' for v in mean[: len(losses)])}"
            f"  val {request.select if config.has_survival else 'auc'} {metric:.3f}"
            f"{'  *' if improved else ''}  {seconds:.1f} s"
        )
        if stale >= request.patience:
            log(f"  early stop: no better validation metric for {request.patience} epochs")
            break
    return best


def _recalibrate(
    request: TrainRequest,
    model: FractureNet,
    dev: Sequence[Example],
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    fits: Sequence[_Fit],
    best_fold: int,
    val_metrics: dict[str, Any],
    alpha: float,
    log: Callable[[str], None],
) -> None:
    """Fit the kept model's recalibration on its validation patients (into ``model``) and
    replace the internal calibration by its cross-fitted estimate (:mod:`models.recalibration`).

    The uncalibrated estimate stays in ``val_metrics['calibration_5y_uncalibrated']``, the
    fit in ``val_metrics['recalibration']``. A fit that fails leaves the model as it is,
    with a note.
    """
    horizon = min(5, request.model.max_followup)
    try:
        val = [dev[i] for i in splits[best_fold][1]]
        fitted = recalibration.fit(val, fits[best_fold].val_predictions, horizon)
        crossed: dict[int, Prediction] = {}
        for (_, va), f in zip(splits, fits, strict=True):
            members = [dev[i] for i in va]
            parts = split_indices(
                members, horizon=horizon, seed=request.seed, val_fraction=0.5,
                folds=_RECALIBRATION_PARTS,
            )  # fmt: skip
            done = recalibration.cross_fitted(
                members, f.val_predictions, horizon, [p for _, p in parts]
            )
            crossed.update(zip(va.tolist(), done, strict=True))
        idx = sorted(crossed)
        target = SurvivalTarget.from_arrays(
            [dev[i].followup_years for i in idx], [dev[i].event for i in idx]
        )
        risk = np.array([crossed[i].risk[horizon - 1] for i in idx])  # type: ignore[index]
        cross = calibration_summary(target, risk, horizon, alpha=alpha)
    except (VfriskError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        # the epochs are done: a failed fit must not cost the checkpoint
        why = exc.message if isinstance(exc, VfriskError) else f"{type(exc).__name__}: {exc}"
        log(f"  not recalibrated: {why}")
        val_metrics["notes"].append(f"not recalibrated: {why}")
        return
    model.survival.set_recalibration(*fitted)  # type: ignore[union-attr]
    log(
        f"  recalibrated the {horizon}-year risk on {len(val)} validation patients: "
        f"cloglog intercept {fitted.intercept:+.3f}, slope {fitted.slope:.3f}"
    )
    if "calibration_5y" in val_metrics:
        val_metrics["calibration_5y_uncalibrated"] = val_metrics["calibration_5y"]
    val_metrics["calibration_5y"] = cross
    val_metrics["recalibration"] = {
        "intercept": round(fitted.intercept, 6), "slope": round(fitted.slope, 6),
        "patients": len(val), "horizon_years": horizon,
        "internal_estimate": f"cross-fitted over {_RECALIBRATION_PARTS} parts",
    }  # fmt: skip


def _canal_reference_hu(
    model: FractureNet, settings: PreprocessingSettings
) -> dict[str, float | None] | None:
    """The network's canal reference per level in HU, for the card (None without the
    intensity branch or a fixed HU window; None for a level no training scan read).

    The branch's features are patch values: HU mapped by the window to [0, 1].
    """
    if model.intensity is None or settings.intensity != "fixed_window":
        return None
    lo, hi = settings.hu_window
    return {
        lv: None if math.isnan(v) else round(lo + v * (hi - lo), 1)
        for lv, v in zip(settings.levels, model.canal_reference.tolist(), strict=True)
    }


def _thick_views(
    request: TrainRequest,
    store: Any,
    config: Any,
    cache_dir: Path,
    dev: Sequence[Example],
    loaded: LoadedInputs,
    settings: PreprocessingSettings,
    progress: Callable[[int, int], None] | None,
    log: Callable[[str], None],
) -> LoadedInputs:
    """The thick-slice view of every development patient, aligned with ``loaded``.

    A patient whose view could not be prepared keeps its stored series (named in the log).
    """
    mm = request.augmentation.thick_mm
    log(f"Preparing thick-slice views (about {mm:g} mm) into {cache_dir} ...")
    t0 = time.perf_counter()
    files, failures = build_thick_cache(
        store, config, cache_dir, dev, mm, workers=request.workers, progress=progress,
        settings=settings,
    )  # fmt: skip
    for f in failures:
        log(f"  no thick view of {f.series_uid}: {f.stage} [{f.reason_code}] {f.error[:200]}")
    have = [i for i, e in enumerate(dev) if e.series_uid in files]
    views = load_examples(
        [dataclasses.replace(dev[i], cache_path=files[dev[i].series_uid]) for i in have],
        settings, config=request.model,
    )  # fmt: skip
    inputs = list(loaded.inputs)
    features = None if loaded.features is None else loaded.features.copy()
    for j, i in enumerate(have):
        inputs[i] = views.inputs[j]
        if features is not None and views.features is not None:
            features[i] = views.features[j]
    log(f"  {len(have)} of {len(dev)} patients with a thick view, {time.perf_counter() - t0:.0f} s")
    return LoadedInputs(inputs, features)


def _by_site(examples: Sequence[Example]) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {}
    for e in examples:
        out.setdefault(e.site, []).append(e)
    return out


def train(
    request: TrainRequest,
    config: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train, select, save and describe a fracture network (steps in the module doc).

    Parameters
    ----------
    request : TrainRequest
    config : engine.config.Config or mapping
        ``[loading]``, ``[preprocessing]`` (unless ``request.preprocessing``) and
        ``[report]`` (CI settings of the card's metrics).
    progress : callable, optional
        ``progress(done, total)`` while uncached series are prepared.
    log : callable
        Receives one line per step and epoch.

    Returns
    -------
    TrainResult

    Raises
    ------
    VfriskError
        ``db_not_found``, ``no_clinical_data``, ``no_training_data`` (no linked patient
        of the training sites with usable inputs), ``too_few_events``, ``bad_argument``.
    """
    from engine.store import Store
    from engine.store.clinical_tables import count_clinical
    from engine.store.training_tables import clinical_sites

    t_start = time.perf_counter()
    if not request.db.is_file():
        raise VfriskError(
            "db_not_found",
            f"database {request.db} does not exist; index the scans (`vfrisk index`) and "
            "import the clinical table (`vfrisk import-clinical`) first, or pass the right --db",
        )
    device = _resolve_device(request.device)
    settings = request.preprocessing or PreprocessingSettings.from_config(config)
    store = Store(request.db, lock_timeout_s=config["storage"]["lock_timeout_s"])
    with store.read() as con:
        if count_clinical(con) == 0:
            raise VfriskError(
                "no_clinical_data",
                f"{request.db} holds no clinical table; labels come from it: run "
                "`vfrisk import-clinical FILE --db DB` first",
            )
        clinical_counts = clinical_sites(con)
    cache_dir = request.cache_dir or request.db.with_name(f"{request.db.stem}.cache")
    log(f"Preparing model inputs into {cache_dir} ...")
    cache = build_cache(
        store, config, cache_dir, workers=request.workers, progress=progress, settings=settings
    )
    log(
        f"  {len(cache.examples)} patients with inputs ({cache.prepared} prepared, "
        f"{cache.reused} cached), {len(cache.failures)} failed, {cache.seconds:.0f} s"
    )
    for f in cache.failures:
        log(f"  skipped series {f.series_uid}: {f.stage} [{f.reason_code}] {f.error[:200]}")
    dev = [e for e in cache.examples if e.site in request.sites]
    if not dev:
        raise VfriskError(
            "no_training_data",
            f"no patient of site(s) {', '.join(request.sites)} is linked to a scan with "
            f"usable model inputs in {request.db} (clinical sites: "
            f"{clinical_counts or 'none'}; {len(cache.failures)} series failed to prepare). "
            "Check the site names ([train] sites of the configuration) and the clinical import",
        )
    what = f"the training site(s) {', '.join(request.sites)} ({len(dev)} patients)"
    _check_events(dev, request.model, request.min_events, what)
    splits = split_indices(
        dev, horizon=request.model.max_followup, seed=request.seed,
        val_fraction=request.val_fraction, folds=request.folds,
    )  # fmt: skip
    for _, val in splits:
        _check_events([dev[i] for i in val], request.model, 1, "a validation split")
    loaded = load_examples(dev, settings, config=request.model)
    thick = None
    if request.augmentation.thick:
        thick = _thick_views(
            request, store, config, cache_dir, dev, loaded, settings, progress, log
        )

    def part(index: Sequence[int], source: LoadedInputs = loaded) -> LoadedInputs:
        f = source.features
        return LoadedInputs([source.inputs[i] for i in index], None if f is None else f[index])

    deterministic = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    log(
        f"Training {request.model.task} {request.model.input_variant} on {len(dev)} patients "
        f"of {', '.join(request.sites)} ({device.type}, {len(splits)} split(s)) ..."
    )
    t_train = time.perf_counter()
    try:
        fits = []
        oof: dict[int, Prediction] = {}
        for fold, (tr, va) in enumerate(splits):
            fit = _fit(
                request, [dev[i] for i in tr], part(tr), [dev[i] for i in va], part(va),
                device, fold, log, None if thick is None else part(tr, thick),
            )  # fmt: skip
            fits.append(fit)
            oof.update(zip(va.tolist(), fit.val_predictions, strict=True))
    finally:
        torch.use_deterministic_algorithms(deterministic)
    best_fold = max(range(len(fits)), key=lambda f: fits[f].best_metric)
    fit = fits[best_fold]
    model = FractureNet(request.model)
    model.load_state_dict(fit.state)
    model.to(device).eval()
    train_seconds = time.perf_counter() - t_train
    folds_summary = [
        {"fold": i + 1, "best_epoch": f.best_epoch, "val_metric": f.best_metric,
         "epochs_run": len(f.history), "history": f.history}
        for i, f in enumerate(fits)
    ]  # fmt: skip

    report = config["report"]
    metric_opts = {"n_boot": int(report["n_boot"]), "seed": int(report["seed"]),
                   "alpha": float(report["alpha"])}  # fmt: skip
    val_idx = sorted(oof)
    val_metrics = metrics_for(
        [dev[i] for i in val_idx], [oof[i] for i in val_idx], calibrate=True, **metric_opts
    )
    if request.recalibrate and request.model.has_survival:
        _recalibrate(
            request, model, dev, splits, fits, best_fold, val_metrics, metric_opts["alpha"], log
        )
    external: dict[str, dict[str, Any]] = {}
    for site, members in sorted(_by_site(cache.examples).items()):
        if site in request.sites:
            continue
        log(f"Evaluating external site {site} ({len(members)} patients) ...")
        loaded_site = load_examples(members, settings, config=request.model)
        preds = predict(model, loaded_site.inputs, device=device, features=loaded_site.features)
        external[site] = metrics_for(members, preds, calibrate=True, **metric_opts)
    metadata = {
        "epoch": fit.best_epoch, "fold": best_fold + 1 if request.folds else None,
        "val_metric": fit.best_metric, "seeds": {"train": request.seed},
        "command": request.command, "train": request.hyperparameters(),
        "data": {"db": str(request.db), "sites": list(request.sites), "patients": len(dev)},
        "internal_validation": val_metrics,
    }  # fmt: skip
    model_id = save_checkpoint(
        model, request.out, preprocessing_version=settings.version, metadata=metadata
    )
    card = build_card(
        request=request, model_id=model_id, settings=settings, cache=cache,
        manifest=find_cohort_manifest(store, cache.examples, request.cohort),
        clinical_counts=clinical_counts, device=str(device), folds=folds_summary,
        best_fold=best_fold, val_metrics=val_metrics, external=external,
        train_seconds=train_seconds, total_seconds=time.perf_counter() - t_start,
        canal_reference=_canal_reference_hu(model, settings),
    )  # fmt: skip
    card_json, card_md = write_card(card, request.out)
    return TrainResult(
        checkpoint=request.out, model_id=model_id, card=card, card_json=card_json,
        card_md=card_md, best_epoch=fit.best_epoch, val_metrics=val_metrics,
        seconds=time.perf_counter() - t_start, failures=cache.failures,
    )  # fmt: skip
