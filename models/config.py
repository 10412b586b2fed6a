"""The shape and variant of the fracture network, as one frozen record stored in checkpoints.

Pure Python (no torch), so the CLI can read and validate a configuration without loading
the network. Defaults size the encoder for training on 2 CPU cores (issue 6: a width-32
encoder costs about 0.05 s per patient per training step there);
:meth:`ModelConfig.convnext_tiny` is the study's encoder (Kong et al. 2025) for a GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.errors import VfriskError

__all__ = [
    "ALL_BONE_FEATURES",
    "BONE_FEATURES",
    "FUSIONS",
    "HAZARD_ACTIVATIONS",
    "INPUT_VARIANTS",
    "LEGACY_BONE_FEATURES",
    "LEGACY_MUSCLE_FEATURES",
    "MUSCLE_FEATURES",
    "TASKS",
    "WEIGHTINGS",
    "ModelConfig",
]

INPUT_VARIANTS = ("bone", "bone_muscle")
TASKS = ("detection", "survival", "multitask")
WEIGHTINGS = ("uncertainty", "pcgrad", "fixed")
FUSIONS = ("attention", "mean")
HAZARD_ACTIVATIONS = ("softplus", "relu")
#: Every per-level bone feature the intensity branch can read
#: (:func:`models.sampling.intensity_features`, over the bone voxels ``bone != 0``): mean,
#: median and standard deviation of their intensity (the patch's [0, 1] scale), the body's
#: mean axial area over the slices it occupies (cm2) and its cranio-caudal extent (cm), and
#: the body's trabecular HU as the biomarkers measured it on the native slices
#: (``ModelInputs.trabecular_hu``, on the patch's scale; the bone mean where it was not
#: measured or the patches have no fixed HU window). Checkpoints written before
#: ``bone_features`` existed read all six, in this order.
LEGACY_BONE_FEATURES = (
    "bone_mean", "bone_median", "bone_sd", "body_area_cm2", "body_height_cm", "trabecular_mean",
)  # fmt: skip
#: The default: the three that read the same at 1, 2.5 and 5 mm slices, and the height loss
#: (:data:`ALL_BONE_FEATURES`). The median and SD of the patch's bone voxels and the body's
#: extent in whole patch slices move with the slice thickness (README, "The model"), and the
#: network took that for risk.
BONE_FEATURES = ("bone_mean", "body_area_cm2", "trabecular_mean", "height_loss")
#: Every bone feature the branch can read: the legacy six, then the body's height loss as
#: the biomarkers measured it on the native slices (``ModelInputs.height_loss``, 0 where not
#: measured; preprocessing pp8 on).
ALL_BONE_FEATURES = (*LEGACY_BONE_FEATURES, "height_loss")
#: Every per-level muscle feature the ``bone_muscle`` variant's branch can read, over the
#: muscle voxels (``bone_muscle != 0`` and ``bone == 0``): their mean axial area over the
#: body's slices (the muscles are kept within them, cm2), mean and median intensity.
#: Checkpoints written before ``muscle_features`` existed read all three, in this order.
LEGACY_MUSCLE_FEATURES = ("muscle_area_cm2", "muscle_mean", "muscle_median")
#: The default muscle features.
MUSCLE_FEATURES = LEGACY_MUSCLE_FEATURES


def _fail(message: str) -> VfriskError:
    return VfriskError("bad_config", f"model configuration: {message}")


@dataclass(frozen=True)
class ModelConfig:
    """What the network looks like and which variant of the study it is.

    Attributes
    ----------
    input_variant : str
        ``'bone'`` (vertebral body only) or ``'bone_muscle'`` (body + the level's muscles):
        which array of :class:`~engine.anatomy.inputs.ModelInputs` feeds the network.
    task : str
        ``'detection'`` (prevalent fracture only), ``'survival'`` (incident fracture only)
        or ``'multitask'`` (both heads on one shared encoder).
    width : int
        Channels of the first encoder stage; each later stage doubles them (ConvNeXt).
    depth : tuple of int
        ConvNeXt blocks per stage; its length is the number of stages (each after the
        first halves the resolution).
    n_levels : int
        Vertebral levels per patient (T12-L4: 5), the first axis of the inputs.
    triplets_per_level : int
        Slice triplets (3 adjacent axial slices as channels) taken from each level; the
        study takes 3.
    triplet_spacing : int
        Slices between the centres of neighbouring evaluation triplets (deterministic,
        centred on the patch, see :mod:`models.sampling`).
    train_window : int
        Training triplet centres are drawn uniformly from this many central slices.
    max_followup : int
        Years of the survival head: it gives P(fracture by year t) for t = 1..max_followup.
    fusion : str
        How the level x triplet features become one patient vector: ``'attention'``
        (gated attention pooling, Ilse et al. 2018, one per head) or ``'mean'``; missing
        levels are masked out of both.
    dropout : float
        Dropout on the pooled patient vector, before the heads.
    layer_scale_init : float
        Initial ConvNeXt layer scale (Liu et al. 2022 use 1e-6).
    weighting : str
        Multitask loss combination: ``'uncertainty'`` (Kendall et al. 2018),
        ``'pcgrad'`` (Yu et al. 2020) or ``'fixed'`` (``task_weights``).
    task_weights : tuple of float
        (detection, survival) weights of ``'fixed'`` weighting.
    intensity_features : bool
        Add the quantitative intensity branch (issue 6): per present level the bone
        voxels' intensity statistics and body size and, for ``'bone_muscle'`` only, the
        muscle area and intensity (:func:`models.sampling.intensity_features`), projected
        per level, averaged over the present levels and concatenated with the fused image
        vector before both heads. A configuration stored without this key (checkpoints
        written before it existed) has no branch.
    hazard_activation : str
        Non-negative yearly hazards of the survival head: ``'softplus'`` (default) or
        Mirai's ``'relu'``, whose years can die (see
        :class:`models.heads.CumulativeProbabilityLayer`). A configuration stored without
        this key (checkpoints written before it existed) is ``'relu'``.
    bone_features : tuple of str
        The intensity branch's per-level bone features, a subset of
        :data:`ALL_BONE_FEATURES` (default :data:`BONE_FEATURES`). A configuration stored
        without this key (checkpoints written before it existed) reads all six.
    muscle_features : tuple of str
        The branch's per-level muscle features for ``input_variant = 'bone_muscle'``, a
        subset of :data:`LEGACY_MUSCLE_FEATURES`, possibly empty (default
        :data:`MUSCLE_FEATURES`). A configuration stored without this key reads all three.
    """

    input_variant: str = "bone_muscle"
    task: str = "multitask"
    width: int = 32
    depth: tuple[int, ...] = (1, 1, 2, 1)
    n_levels: int = 5
    triplets_per_level: int = 3
    triplet_spacing: int = 4
    train_window: int = 16
    max_followup: int = 5
    fusion: str = "attention"
    dropout: float = 0.1
    layer_scale_init: float = 1e-6
    weighting: str = "uncertainty"
    task_weights: tuple[float, float] = (1.0, 1.0)
    intensity_features: bool = False
    hazard_activation: str = "softplus"
    bone_features: tuple[str, ...] = BONE_FEATURES
    muscle_features: tuple[str, ...] = MUSCLE_FEATURES

    def __post_init__(self) -> None:
        choices = {
            "input_variant": INPUT_VARIANTS,
            "task": TASKS,
            "weighting": WEIGHTINGS,
            "fusion": FUSIONS,
            "hazard_activation": HAZARD_ACTIVATIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise _fail(f"{name} = {getattr(self, name)!r}; choose one of {allowed}")
        positive = ("width", "n_levels", "triplets_per_level", "train_window", "max_followup")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise _fail(f"{name} = {value!r} must be a positive integer")
        if self.triplet_spacing < 0:
            raise _fail(f"triplet_spacing = {self.triplet_spacing} must be >= 0")
        if not self.depth or any(not isinstance(d, int) or d < 0 for d in self.depth):
            raise _fail(f"depth = {self.depth!r} must be a non-empty tuple of integers >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise _fail(f"dropout = {self.dropout} must be in [0, 1)")
        if len(self.task_weights) != 2 or any(w < 0 for w in self.task_weights):
            raise _fail(f"task_weights = {self.task_weights!r} must be two weights >= 0")
        if not isinstance(self.intensity_features, bool):
            raise _fail(f"intensity_features = {self.intensity_features!r} must be true or false")
        for name, allowed, may_be_empty in (
            ("bone_features", ALL_BONE_FEATURES, False),
            ("muscle_features", LEGACY_MUSCLE_FEATURES, True),
        ):
            chosen = getattr(self, name)
            if (
                (not chosen and not may_be_empty)
                or any(f not in allowed for f in chosen)
                or len(set(chosen)) < len(chosen)
            ):
                raise _fail(f"{name} = {chosen!r} must name distinct features of {allowed}")

    @property
    def has_detection(self) -> bool:
        """Whether the network has the detection head."""
        return self.task in ("detection", "multitask")

    @property
    def has_survival(self) -> bool:
        """Whether the network has the survival head."""
        return self.task in ("survival", "multitask")

    @property
    def feature_dim(self) -> int:
        """Channels of the encoder output: ``width * 2 ** (stages - 1)``."""
        return self.width * 2 ** (len(self.depth) - 1)

    @classmethod
    def convnext_tiny(cls, **overrides: Any) -> ModelConfig:
        """The study's encoder, ConvNeXt-Tiny (width 96, depth 3-3-9-3), for a GPU."""
        return cls(**{"width": 96, "depth": (3, 3, 9, 3), **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists) for checkpoints and model cards.

        ``intensity_features`` is written only when set, ``hazard_activation`` only when
        it is not ``'relu'`` and ``bone_features`` / ``muscle_features`` only with the
        branch and when they are not :data:`LEGACY_BONE_FEATURES` /
        :data:`LEGACY_MUSCLE_FEATURES`: a network serialises as before those keys existed,
        so its model id (a hash over this dict, :func:`models.checkpoint.compute_model_id`)
        is unchanged and the ids of older checkpoints still verify.
        """
        values = {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }
        if not self.intensity_features:
            del values["intensity_features"]
        for name, legacy in (
            ("bone_features", LEGACY_BONE_FEATURES),
            ("muscle_features", LEGACY_MUSCLE_FEATURES),
        ):
            if not self.intensity_features or getattr(self, name) == legacy:
                del values[name]
        if self.hazard_activation == "relu":
            del values["hazard_activation"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused (``bad_config``).

        A missing ``intensity_features`` means no intensity branch, a missing
        ``hazard_activation`` ``'relu'`` and a missing ``bone_features`` /
        ``muscle_features`` :data:`LEGACY_BONE_FEATURES` / :data:`LEGACY_MUSCLE_FEATURES`
        (see :meth:`to_dict`).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise _fail(f"unknown keys {unknown}; known keys are {sorted(known)}")
        values = {"intensity_features": False, "hazard_activation": "relu", **values}
        if values["intensity_features"]:
            values.setdefault("bone_features", LEGACY_BONE_FEATURES)
            values.setdefault("muscle_features", LEGACY_MUSCLE_FEATURES)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
