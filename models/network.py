"""The multitask fracture network of Kong et al. (2025), tolerant of missing levels.

Per patient: ``n_levels`` vertebrae (T12-L4) x ``triplets_per_level`` slice triplets, each
a 3-channel 2D image, go through one shared :class:`~models.encoder.ConvNeXtEncoder`. A
learned embedding of the level (which vertebra) is added to each feature; the features
of the present levels are pooled into one patient vector per head (the study instead
concatenates a fixed 9, which cannot represent a missing level), then:

- detection head: logit of a prevalent vertebral fracture in the scan;
- survival head: Mirai's cumulative probability layer, P(fracture by year t) for
  t = 1..max_followup, monotone in t by construction.

Training lives apart (``models.losses``, ``models.weighting`` and the trainer). This
module imports torch; import it lazily (the CLI must start without torch).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from models.config import ModelConfig
from models.encoder import ConvNeXtEncoder
from models.heads import AttentionPool, CumulativeProbabilityLayer, DetectionHead, MaskedMeanPool

__all__ = ["FractureNet", "MultitaskOutput"]


class MultitaskOutput(NamedTuple):
    """What :class:`FractureNet` returns; a head the task lacks gives None.

    Attributes
    ----------
    fracture_logit : torch.Tensor or None
        shape (B,): logit of a prevalent vertebral fracture (``sigmoid`` = probability).
    hazards : torch.Tensor or None
        float32, shape (B, T), >= 0: the yearly hazards of the survival head.
    risk : torch.Tensor or None
        float32, shape (B, T), in [0, 1], non-decreasing along T: ``risk[:, t - 1]`` is
        P(fracture by year t), t = 1..max_followup.
    risk_logit : torch.Tensor or None
        float32, shape (B, T): ``logit(risk)``, what the survival loss takes (stable BCE).
    """

    fracture_logit: torch.Tensor | None
    hazards: torch.Tensor | None
    risk: torch.Tensor | None
    risk_logit: torch.Tensor | None


def _pool(config: ModelConfig, dim: int) -> nn.Module:
    return AttentionPool(dim) if config.fusion == "attention" else MaskedMeanPool()


class FractureNet(nn.Module):
    """Shared encoder, masked fusion, detection and/or survival heads (``config.task``).

    Parameters
    ----------
    config : ModelConfig
        Shape and variant; stored with the weights by :mod:`models.checkpoint`.
    """

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:  # noqa: B008
        super().__init__()
        self.config = config
        self.encoder = ConvNeXtEncoder(3, config.width, config.depth, config.layer_scale_init)
        dim = self.encoder.out_dim
        self.level_embedding = nn.Parameter(torch.zeros(config.n_levels, dim))
        nn.init.trunc_normal_(self.level_embedding, std=0.02)
        self.dropout = nn.Dropout(config.dropout)
        self.detection_pool = _pool(config, dim) if config.has_detection else None
        self.detection = DetectionHead(dim) if config.has_detection else None
        self.survival_pool = _pool(config, dim) if config.has_survival else None
        self.survival = (
            CumulativeProbabilityLayer(dim, config.max_followup) if config.has_survival else None
        )
        self.channels_last = False

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task uses (encoder, level embedding): where PCGrad operates."""
        return [*self.encoder.parameters(), self.level_embedding]

    def to_channels_last(self) -> FractureNet:
        """Keep the encoder's activations in channels_last memory (faster convs on GPU)."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def forward(self, images: torch.Tensor, level_present: torch.Tensor) -> MultitaskOutput:
        """Detection logit and cumulative risk of a batch of patients.

        Parameters
        ----------
        images : torch.Tensor
            float, shape (B, n_levels, triplets_per_level, 3, H, W), values in [0, 1]
            (:func:`models.sampling.to_batch`). The content of missing levels is ignored.
        level_present : torch.Tensor
            bool, shape (B, n_levels); every patient needs at least one present level.

        Returns
        -------
        MultitaskOutput
        """
        if images.dim() != 6 or images.shape[3] != 3 or images.shape[1] != self.config.n_levels:
            raise ValueError(
                f"images must be (B, {self.config.n_levels}, K, 3, H, W), got {tuple(images.shape)}"
            )
        b, n_levels, k = images.shape[:3]
        if level_present.shape != (b, n_levels) or level_present.dtype != torch.bool:
            raise ValueError(
                f"level_present must be bool of shape ({b}, {n_levels}), got "
                f"{level_present.dtype} {tuple(level_present.shape)}"
            )
        if not bool(level_present.any(dim=1).all()):
            raise ValueError("a patient has no present level: it cannot be scored")
        x = images.flatten(0, 2)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.encoder(x).unflatten(0, (b, n_levels, k))
        feats = feats + self.level_embedding[None, :, None, :].to(feats.dtype)
        tokens = feats.flatten(1, 2)  # (B, L * K, C)
        mask = level_present.repeat_interleave(k, dim=1)  # (B, L * K)
        logit = hazards = risk = risk_logit = None
        if self.detection is not None and self.detection_pool is not None:
            logit = self.detection(self.dropout(self.detection_pool(tokens, mask)))
        if self.survival is not None and self.survival_pool is not None:
            hazards, risk_logit = self.survival(self.dropout(self.survival_pool(tokens, mask)))
            risk = torch.sigmoid(risk_logit)
        return MultitaskOutput(
            fracture_logit=logit, hazards=hazards, risk=risk, risk_logit=risk_logit
        )
