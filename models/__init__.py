"""vfrisk models: the multitask bone + muscle fracture network (Kong et al. 2025, issue 6).

- :mod:`models.config`: :class:`ModelConfig`, the variant and shape (no torch);
- :mod:`models.sampling`: slice triplets from the engine's ``ModelInputs``;
- :mod:`models.encoder`, :mod:`models.heads`, :mod:`models.network`: :class:`FractureNet`
  returning :class:`MultitaskOutput` (detection logit, yearly hazards, cumulative risk);
- :mod:`models.losses`: detection BCE, Mirai's yearly survival labels and masked BCE;
- :mod:`models.weighting`: uncertainty weighting, PCGrad, fixed weights;
- :mod:`models.checkpoint`: save / load with config, preprocessing version and model id;
- :mod:`models.inference`: :func:`predict`, inputs -> detection probability and risk.

Names are imported lazily on first use, so ``import models`` does not import torch (the
CLI must start fast).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Checkpoint",
    "FractureNet",
    "ModelBatch",
    "ModelConfig",
    "MultitaskOutput",
    "PCGrad",
    "Prediction",
    "SurvivalLabels",
    "TripletSample",
    "UncertaintyWeighting",
    "detection_loss",
    "load_checkpoint",
    "make_weighting",
    "multitask_backward",
    "predict",
    "sample_triplets",
    "save_checkpoint",
    "survival_labels",
    "survival_loss",
    "to_batch",
]

_WHERE = {
    "Checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ModelConfig": "config",
    "Prediction": "inference",
    "predict": "inference",
    "SurvivalLabels": "losses",
    "detection_loss": "losses",
    "survival_labels": "losses",
    "survival_loss": "losses",
    "FractureNet": "network",
    "MultitaskOutput": "network",
    "ModelBatch": "sampling",
    "TripletSample": "sampling",
    "sample_triplets": "sampling",
    "to_batch": "sampling",
    "PCGrad": "weighting",
    "UncertaintyWeighting": "weighting",
    "make_weighting": "weighting",
    "multitask_backward": "weighting",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
