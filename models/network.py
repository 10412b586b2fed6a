"""The multitask fracture network of Kong et al. (2025), tolerant of missing levels.

Per patient: ``n_levels`` vertebrae (T12-L4) x ``triplets_per_level`` slice triplets, each
a 3-channel 2D image, go through one shared :class:`~models.encoder.ConvNeXtEncoder`. A
learned embedding of the level (which vertebra) is added to each feature; the features
of the present levels are pooled into one patient vector per head (the study instead
concatenates a fixed 9, which cannot represent a missing level), then:

- detection head: logit of a prevalent vertebral fracture in the scan;
- survival head: Mirai's cumulative probability layer, P(fracture by year t) for
  t = 1..max_followup, monotone in t by construction.

With ``config.intensity_features`` (issue 6) a quantitative branch joins them: each
present level's intensity features (:func:`models.sampling.intensity_features`: bone
intensity and body size, plus muscle area and intensity for ``bone_muscle``) are
standardised by the training set's statistics (buffers stored with the weights),
projected by a small shared MLP, averaged over the present levels and concatenated with
each head's pooled image vector. The CNN alone, trained on a few hundred patients, does
not learn absolute density and muscle quantity precisely from patches.

Before that the features are put on the development site's HU scale: the last column is
the spinal canal's reading (:data:`models.sampling.REFERENCE_FEATURES`), the scan's
internal reference; the median over the patient's levels of (reading - the training
set's median reading of that level) is the scan's calibration offset, and every mean and
median column is moved by minus it; the canal column then leaves (calibrated, it holds
only its reading's noise). A level without a reading does not count; a scan without any
is left as it is. A scanner that reads 8 HU low then gives the features a development
scan of the same patient would.

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
from models.sampling import feature_names

__all__ = ["INTENSITY_DIM", "FractureNet", "MultitaskOutput"]

#: Width of the intensity branch's per-level projection (and of its patient vector).
INTENSITY_DIM = 16


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
        P(fracture by year t), t = 1..max_followup, after the survival head's
        recalibration (:class:`~models.heads.CumulativeProbabilityLayer`; the identity
        until the trainer fits it).
    risk_logit : torch.Tensor or None
        float32, shape (B, T): the head's uncalibrated logits (``logit(risk)`` under the
        identity recalibration), what the survival loss takes (stable BCE).
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
        # Heads first and the branch last: a network without the branch draws its initial
        # weights in the same order as before the branch existed (same seed, same model).
        head_dim = dim + (INTENSITY_DIM if config.intensity_features else 0)
        self.detection_pool = _pool(config, dim) if config.has_detection else None
        self.detection = DetectionHead(head_dim) if config.has_detection else None
        self.survival_pool = _pool(config, dim) if config.has_survival else None
        self.survival = (
            CumulativeProbabilityLayer(head_dim, config.max_followup, config.hazard_activation)
            if config.has_survival
            else None
        )
        self.n_features = len(feature_names(config)) if config.intensity_features else 0
        self.intensity: nn.Module | None = None
        if config.intensity_features:
            # the branch reads the tissue columns; the last, the canal, only calibrates them
            tissue = feature_names(config)[:-1]
            self.register_buffer("feature_shift", torch.zeros(len(tissue)))
            self.register_buffer("feature_scale", torch.ones(len(tissue)))
            # the development site's canal reading per level (NaN: none in training)
            self.register_buffer("canal_reference", torch.full((config.n_levels,), float("nan")))
            calibrated = [n.endswith(("_mean", "_median")) for n in tissue]
            self.register_buffer("calibrated", torch.tensor(calibrated), persistent=False)
            self.intensity = nn.Sequential(
                nn.Linear(len(tissue), INTENSITY_DIM),
                nn.GELU(),
                nn.Linear(INTENSITY_DIM, INTENSITY_DIM),
            )
        self.channels_last = False

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task uses (encoder, level and intensity branch): PCGrad's."""
        branch = [] if self.intensity is None else list(self.intensity.parameters())
        return [*self.encoder.parameters(), self.level_embedding, *branch]

    @torch.no_grad()
    def fit_feature_scaling(self, features: torch.Tensor, level_present: torch.Tensor) -> None:
        """Set the intensity branch's standardisation from the training patients.

        Parameters
        ----------
        features : torch.Tensor
            float, shape (N, n_levels, F): :func:`models.sampling.intensity_features` of
            the training series.
        level_present : torch.Tensor
            bool, shape (N, n_levels): only present levels count.

        Notes
        -----
        First the canal reference: per level, the median of the training series' canal
        readings (the last column; NaN where none was read). Then, on the features
        calibrated with it (:meth:`calibrate`), shift = mean and scale = standard
        deviation of each feature over the present levels (scale 1 where a feature is
        constant). All are buffers, so a checkpoint standardises its inputs exactly as
        in training.
        """
        if self.intensity is None:
            raise ValueError("this network has no intensity branch (intensity_features off)")
        canal = torch.where(level_present, features[..., -1].double(), float("nan"))
        self.canal_reference.copy_(torch.nanquantile(canal, 0.5, dim=0).float())
        rows = self.calibrate(features, level_present)[level_present].double()
        if rows.shape[0] == 0:
            raise ValueError("fit_feature_scaling needs at least one present level")
        sd = rows.std(dim=0, unbiased=False) if rows.shape[0] > 1 else torch.zeros_like(rows[0])
        self.feature_shift.copy_(rows.mean(dim=0).float())
        self.feature_scale.copy_(torch.where(sd > 1e-8, sd, torch.ones_like(sd)).float())

    def calibrate(self, features: torch.Tensor, level_present: torch.Tensor) -> torch.Tensor:
        """The features on the development site's HU scale (module doc).

        Parameters
        ----------
        features : torch.Tensor
            float, shape (B, n_levels, F), last column the canal reading (NaN: none).
        level_present : torch.Tensor
            bool, shape (B, n_levels).

        Returns
        -------
        torch.Tensor
            float32, shape (B, n_levels, F - 1): the tissue columns, their means and
            medians minus each patient's calibration offset. The canal column is left
            out: calibrated, it holds only its reading's noise (training scans read like
            the reference), which the branch would learn from.
        """
        x = features.float()
        canal = x[..., -1]
        reference = self.canal_reference.to(x.device)
        diff = torch.where(level_present, canal - reference, float("nan"))
        offset = torch.nan_to_num(torch.nanquantile(diff, 0.5, dim=1), nan=0.0)
        move = self.calibrated.to(x.device).to(x.dtype)
        return x[..., :-1] - offset[:, None, None] * move

    def to_channels_last(self) -> FractureNet:
        """Keep the encoder's activations in channels_last memory (faster convs on GPU)."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def forward(
        self,
        images: torch.Tensor,
        level_present: torch.Tensor,
        features: torch.Tensor | None = None,
    ) -> MultitaskOutput:
        """Detection logit and cumulative risk of a batch of patients.

        Parameters
        ----------
        images : torch.Tensor
            float, shape (B, n_levels, triplets_per_level, 3, H, W), values in [0, 1]
            (:func:`models.sampling.to_batch`). The content of missing levels is ignored.
        level_present : torch.Tensor
            bool, shape (B, n_levels); every patient needs at least one present level.
        features : torch.Tensor, optional
            float, shape (B, n_levels, F) (:attr:`ModelBatch.features
            <models.sampling.ModelBatch>`): required with ``config.intensity_features``,
            refused without it. Rows of missing levels are ignored.

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
        quant = self._intensity(features, level_present)
        x = images.flatten(0, 2)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.encoder(x).unflatten(0, (b, n_levels, k))
        feats = feats + self.level_embedding[None, :, None, :].to(feats.dtype)
        tokens = feats.flatten(1, 2)  # (B, L * K, C)
        mask = level_present.repeat_interleave(k, dim=1)  # (B, L * K)
        logit = hazards = risk = risk_logit = None
        if self.detection is not None and self.detection_pool is not None:
            logit = self.detection(
                self.dropout(self._join(self.detection_pool(tokens, mask), quant))
            )
        if self.survival is not None and self.survival_pool is not None:
            pooled = self._join(self.survival_pool(tokens, mask), quant)
            hazards, risk_logit, risk = self.survival(self.dropout(pooled))
        return MultitaskOutput(
            fracture_logit=logit, hazards=hazards, risk=risk, risk_logit=risk_logit
        )

    def _intensity(
        self, features: torch.Tensor | None, level_present: torch.Tensor
    ) -> torch.Tensor | None:
        """The intensity branch's patient vector (B, INTENSITY_DIM), or None without it."""
        if self.intensity is None:
            if features is not None:
                raise ValueError("features given, but this network has no intensity branch")
            return None
        b, n_levels = level_present.shape
        if features is None or features.shape != (b, n_levels, self.n_features):
            got = None if features is None else tuple(features.shape)
            raise ValueError(
                f"the intensity branch needs features of shape ({b}, {n_levels}, "
                f"{self.n_features}), got {got}"
            )
        x = (self.calibrate(features, level_present) - self.feature_shift) / self.feature_scale
        x = torch.where(level_present[..., None], x, torch.zeros_like(x))  # no NaN leaks
        proj = self.intensity(x)
        weight = level_present.to(proj.dtype)[..., None]
        return (proj * weight).sum(dim=1) / weight.sum(dim=1)

    @staticmethod
    def _join(pooled: torch.Tensor, quant: torch.Tensor | None) -> torch.Tensor:
        return pooled if quant is None else torch.cat([pooled, quant.to(pooled.dtype)], dim=1)
