"""Inference: model inputs of many series -> detection probability and 1..T-year risk.

The one path from :class:`~engine.anatomy.inputs.ModelInputs` to numbers, used by
``vfrisk score``, the trainer's validation and the dashboard's ad hoc scoring, so a series
gets the same risk wherever it is scored. Deterministic centred slice triplets
(:func:`models.sampling.sample_triplets` without a generator) and, for a model with
the intensity branch, the features of the whole level arrays; on CUDA the batch travels
through pinned memory with a non-blocking copy and runs under bf16 autocast with
channels_last activations, on CPU in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.anatomy.inputs import ModelInputs
from models.network import FractureNet
from models.sampling import sample_triplets

__all__ = ["Prediction", "predict"]


@dataclass(frozen=True)
class Prediction:
    """The model's output for one series.

    Attributes
    ----------
    series_uid : str
    p_fracture : float or None
        P(prevalent vertebral fracture); None when the model has no detection head.
    risk : tuple of float or None
        ``risk[t - 1]`` = P(fracture by year t), t = 1..max_followup, non-decreasing;
        None when the model has no survival head.
    """

    series_uid: str
    p_fracture: float | None
    risk: tuple[float, ...] | None


def _arrays(
    inputs: Sequence[ModelInputs], model: FractureNet, features: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Images, level_present and (with the intensity branch) features of a chunk."""
    samples = [
        sample_triplets(x, model.config, None, None if features is None else features[i])
        for i, x in enumerate(inputs)
    ]
    for s in samples:
        if not s.level_present.any():
            raise ValueError(f"series {s.series_uid} has no present level: it cannot be scored")
    features = (
        np.stack([s.features for s in samples])  # type: ignore[misc]
        if model.config.intensity_features
        else None
    )
    images = np.stack([s.images for s in samples])
    return images, np.stack([s.level_present for s in samples]), features


@torch.inference_mode()
def predict(
    model: FractureNet,
    inputs: Sequence[ModelInputs],
    *,
    device: str | torch.device | None = None,
    batch_size: int = 32,
    features: np.ndarray | None = None,
) -> list[Prediction]:
    """Score series with ``model`` (put in eval mode), ``batch_size`` at a time.

    Parameters
    ----------
    model : FractureNet
    inputs : sequence of ModelInputs
        Each with at least one present level (else ``ValueError`` naming the series).
    device : str or torch.device, optional
        Default: the device of the model's parameters.
    batch_size : int
    features : np.ndarray, optional
        shape (len(inputs), n_levels, F): the inputs' intensity features measured when
        they were loaded (``models.data.load_examples`` with the model's config, which
        may have dropped the array they are measured from); None = measured here.

    Returns
    -------
    list of Prediction
        In the order of ``inputs``.
    """
    model.eval()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    cuda = dev.type == "cuda"
    out: list[Prediction] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        part = None if features is None else features[start : start + batch_size]
        arrays = _arrays(chunk, model, part)
        images, present, feats = (None if a is None else torch.from_numpy(a) for a in arrays)
        if cuda:
            images, present, feats = (
                None if t is None else t.pin_memory().to(dev, non_blocking=True)
                for t in (images, present, feats)
            )
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            result = model(images.float(), present, feats)  # type: ignore[union-attr]
        p = None if result.fracture_logit is None else torch.sigmoid(result.fracture_logit.float())
        risk = None if result.risk is None else result.risk.float()
        p_np = None if p is None else p.cpu().numpy()
        risk_np = None if risk is None else risk.cpu().numpy()
        for i, x in enumerate(chunk):
            out.append(
                Prediction(
                    series_uid=x.series_uid,
                    p_fracture=None if p_np is None else float(p_np[i]),
                    risk=None if risk_np is None else tuple(float(v) for v in risk_np[i]),
                )
            )
    return out
