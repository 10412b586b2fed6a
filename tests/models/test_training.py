"""A tiny model learns: it overfits a tiny batch, and a seeded run is reproducible."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from engine.anatomy.inputs import ModelInputs
from engine.evaluation import SurvivalTarget, auroc, harrell_c
from models.config import ModelConfig
from models.losses import detection_loss, survival_labels, survival_loss
from models.network import FractureNet
from models.sampling import ModelBatch, sample_triplets, to_batch
from models.weighting import make_weighting, multitask_backward

N = 8
SHAPE = (8, 16, 24)  # slices, rows, cols: small, so 50 steps take a few seconds
# each patient's own density shift: something to memorise, unrelated to the label order
OFFSET = np.array([0.3, -0.3, -0.1, 0.4, 0.0, -0.4, 0.2, -0.2])
PREVALENT = np.array([1, 0, 1, 0, 0, 1, 0, 1])
TIME = np.array([0.5, 5.5, 1.5, 3.2, 2.5, 2.2, 4.0, 0.1])
EVENT = np.array([1, 0, 1, 0, 2, 1, 0, 1])


def _batch(config: ModelConfig, make_inputs: Callable[..., ModelInputs]) -> ModelBatch:
    patients = [make_inputs(i, shape=SHAPE, offset=OFFSET[i]) for i in range(N)]
    return to_batch([sample_triplets(p, config) for p in patients])


def _steps(
    config: ModelConfig, make_inputs: Callable[..., ModelInputs], steps: int, seed: int
) -> tuple[list[float], list[float], FractureNet]:
    torch.manual_seed(seed)
    net = FractureNet(config)
    weighting = make_weighting(config, seed=seed)
    params = list(net.parameters())
    if isinstance(weighting, torch.nn.Module):
        params += list(weighting.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    batch = _batch(config, make_inputs)
    lab = survival_labels(TIME, EVENT, config.max_followup)
    det_hist, surv_hist = [], []
    for _ in range(steps):
        out = net(*batch)
        losses = [detection_loss(out.fracture_logit, PREVALENT)]
        losses.append(survival_loss(out.risk_logit, lab.y_seq, lab.mask))
        opt.zero_grad()
        multitask_backward(weighting, losses, net)
        opt.step()
        det_hist.append(losses[0].item())
        surv_hist.append(losses[1].item())
    return det_hist, surv_hist, net


@pytest.mark.parametrize("weighting", ["uncertainty", "pcgrad"])
def test_tiny_model_overfits_a_tiny_batch(
    tiny_config: ModelConfig, make_inputs: Callable[..., ModelInputs], weighting: str
) -> None:
    config = dataclasses.replace(tiny_config, weighting=weighting)
    det, surv, net = _steps(config, make_inputs, 60, seed=0)
    # seeded and deterministic on CPU; seed 0 reaches about 0.11 x its first losses
    assert det[-1] < 0.25 * det[0]
    assert surv[-1] < 0.25 * surv[0]
    net.eval()
    with torch.no_grad():
        out = net(*_batch(config, make_inputs))
    # the memorised batch is ranked perfectly (engine.evaluation as the reference)
    assert auroc(PREVALENT, out.fracture_logit.numpy()).estimate == 1.0
    target = SurvivalTarget.from_arrays(TIME, EVENT)
    assert harrell_c(target, out.risk[:, -1].numpy(), ci="none").estimate >= 0.9


def test_training_is_deterministic_under_a_seed(
    tiny_config: ModelConfig, make_inputs: Callable[..., ModelInputs]
) -> None:
    a = _steps(tiny_config, make_inputs, 3, seed=7)
    b = _steps(tiny_config, make_inputs, 3, seed=7)
    assert a[0] == b[0] and a[1] == b[1]


def test_weight_average_follows_the_warm_up_and_decay_by_hand() -> None:
    from models.train import _WeightAverage

    torch.manual_seed(0)
    net = FractureNet(ModelConfig(width=8, depth=(1, 1), intensity_features=True))
    first = [p.detach().clone() for p in net.parameters()]
    average = _WeightAverage(net, decay=0.5)
    expected = [p.clone() for p in first]
    for step in (1, 2, 3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(float(step))
        average.update()
        d = min(0.5, (1.0 + step) / (10.0 + step))  # warm-up: 0.18, 0.25, 0.31
        expected = [
            d * e + (1 - d) * p.detach() for e, p in zip(expected, net.parameters(), strict=True)
        ]
    for got, want, p in zip(
        average.network().parameters(), expected, net.parameters(), strict=True
    ):
        torch.testing.assert_close(got, want)
        assert not torch.equal(got, p)  # an average, not the network's weights
    # buffers are the network's own (the branch's feature scaling is fitted before training)
    net.feature_scale.fill_(3.0)
    assert torch.equal(average.network().feature_scale, net.feature_scale)
    assert all(not p.requires_grad for p in average.network().parameters())
