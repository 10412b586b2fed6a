"""Multitask weighting: PCGrad and uncertainty weighting against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.config import ModelConfig
from models.weighting import (
    FixedWeighting,
    PCGrad,
    UncertaintyWeighting,
    make_weighting,
    multitask_backward,
    pcgrad_project,
)


def test_pcgrad_projection_against_hand_computed() -> None:
    # g1 = (1, 0), g2 = (-1, 1) conflict (g1.g2 = -1):
    # g1' = g1 - (-1 / |g2|^2) g2 = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5)
    # g2' = g2 - (-1 / |g1|^2) g1 = (-1, 1) + (1, 0) = (0, 1); sum (0.5, 1.5)
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    torch.testing.assert_close(pcgrad_project([g1, g2]), torch.tensor([0.5, 1.5]))
    # the projected g1' is orthogonal to g2, as in Yu et al.'s figure
    assert torch.dot(torch.tensor([0.5, 0.5]), g2).item() == 0.0


def test_pcgrad_leaves_agreeing_gradients_alone() -> None:
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    torch.testing.assert_close(pcgrad_project([g1, g2]), torch.tensor([2.0, 1.0]))


def test_pcgrad_backward_against_manual_projection() -> None:
    # Reference: per-task autograd gradients, pcgrad_project on the shared layer,
    # each head's own gradient on its head.
    torch.manual_seed(0)
    shared, head_a, head_b = nn.Linear(4, 3), nn.Linear(3, 1), nn.Linear(3, 1)
    x = torch.randn(5, 4)

    def losses() -> list[torch.Tensor]:
        h = torch.tanh(shared(x))
        return [head_a(h).pow(2).mean(), (head_b(h) - 3.0).pow(2).mean()]

    shared_p, task_p = list(shared.parameters()), [*head_a.parameters(), *head_b.parameters()]
    la, lb = losses()
    ga = torch.autograd.grad(la, shared_p + task_p, retain_graph=True, allow_unused=True)
    gb = torch.autograd.grad(lb, shared_p + task_p, allow_unused=True)
    flat = [torch.cat([g.reshape(-1) for g in gs[:2]]) for gs in (ga, gb)]
    expected = pcgrad_project(flat)

    total = PCGrad(seed=0).backward(losses(), shared_p, task_p)
    got = torch.cat([p.grad.reshape(-1) for p in shared_p])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(head_a.weight.grad, ga[2])
    torch.testing.assert_close(head_b.weight.grad, gb[4])
    assert total.item() == pytest.approx((la + lb).item())


def test_uncertainty_weighting_against_formula() -> None:
    # Kendall et al. (2018), classification form with s = log sigma^2:
    # L = exp(-s1) L1 + s1 / 2 + exp(-s2) L2 + s2 / 2; s = (0, ln 2), L = (0.5, 3):
    # 0.5 + 0 + 1.5 + ln(2) / 2
    uw = UncertaintyWeighting(2)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.0, math.log(2.0)]))
    total = uw([torch.tensor(0.5), torch.tensor(3.0)])
    assert total.item() == pytest.approx(2.0 + math.log(2.0) / 2, abs=1e-6)
    torch.testing.assert_close(uw.weights, torch.tensor([1.0, 0.5]))


def test_uncertainty_weighting_optimum_is_log_twice_the_loss() -> None:
    # d/ds [exp(-s) L + s / 2] = 0  <=>  s = log(2 L)
    uw = UncertaintyWeighting(2)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([math.log(1.0), math.log(6.0)]))
    uw([torch.tensor(0.5), torch.tensor(3.0)]).backward()
    torch.testing.assert_close(uw.log_vars.grad, torch.zeros(2), atol=1e-6, rtol=0)


def test_fixed_weighting_and_factory() -> None:
    fw = FixedWeighting([2.0, 0.5])
    assert fw([torch.tensor(1.0), torch.tensor(4.0)]).item() == pytest.approx(4.0)
    assert isinstance(make_weighting(ModelConfig(weighting="uncertainty")), UncertaintyWeighting)
    assert isinstance(make_weighting(ModelConfig(weighting="pcgrad")), PCGrad)
    fixed = make_weighting(ModelConfig(weighting="fixed", task_weights=(1.0, 3.0)))
    torch.testing.assert_close(fixed.weights, torch.tensor([1.0, 3.0]))


def test_multitask_backward_fixed_equals_weighted_sum_gradient() -> None:
    torch.manual_seed(1)
    net = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    out = net(x)
    losses = [out[:, 0].pow(2).mean(), out[:, 1].abs().mean()]
    multitask_backward(FixedWeighting([1.0, 2.0]), losses, net)
    got = net.weight.grad.clone()
    net.zero_grad()
    out = net(x)
    (out[:, 0].pow(2).mean() + 2.0 * out[:, 1].abs().mean()).backward()
    torch.testing.assert_close(got, net.weight.grad)
