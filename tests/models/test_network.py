"""The network: named outputs, monotone risk in [0, 1], masked missing levels, devices."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from models.config import ModelConfig
from models.heads import CumulativeProbabilityLayer
from models.network import FractureNet, MultitaskOutput

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _batch(seed: int, b: int = 3, k: int = 2, hw: tuple[int, int] = (32, 48)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 5, k, 3, *hw, generator=g)


def _net(config: ModelConfig, seed: int = 0) -> FractureNet:
    torch.manual_seed(seed)
    return FractureNet(config).eval()


def test_output_shapes_and_named_fields(tiny_config: ModelConfig) -> None:
    out = _net(tiny_config)(_batch(0), torch.ones(3, 5, dtype=torch.bool))
    assert isinstance(out, MultitaskOutput)
    assert out._fields == ("fracture_logit", "hazards", "risk", "risk_logit")
    assert out.fracture_logit.shape == (3,)
    for t in (out.hazards, out.risk, out.risk_logit):
        assert t.shape == (3, tiny_config.max_followup)
        assert t.dtype == torch.float32
    # identity recalibration: risk = 1 - exp(-softplus(logit)) = sigmoid(logit)
    torch.testing.assert_close(out.risk, torch.sigmoid(out.risk_logit), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("task", "has_logit", "has_risk"),
    [("detection", True, False), ("survival", False, True), ("multitask", True, True)],
)
def test_single_task_variants_have_only_their_head(
    tiny_config: ModelConfig, task: str, has_logit: bool, has_risk: bool
) -> None:
    config = dataclasses.replace(tiny_config, task=task, max_followup=3)
    out = _net(config)(_batch(1), torch.ones(3, 5, dtype=torch.bool))
    assert (out.fracture_logit is not None) is has_logit
    assert (out.risk is not None) is has_risk
    assert (out.hazards is not None) is has_risk
    if has_risk:
        assert out.risk.shape == (3, 3)


@pytest.mark.parametrize("seed", range(4))
def test_risk_in_unit_interval_and_monotone_for_random_weights(
    tiny_config: ModelConfig, seed: int
) -> None:
    net = _net(dataclasses.replace(tiny_config, max_followup=7), seed)
    # large random head weights: many hazards are 0 (ReLU) and many large
    with torch.no_grad():
        for p in net.survival.parameters():
            p.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(seed))
    present = torch.rand(8, 5, generator=torch.Generator().manual_seed(seed)) > 0.4
    present[:, 2] = True  # at least one level per patient
    out = net(_batch(seed, b=8), present)
    assert torch.all(out.hazards >= 0)
    assert torch.all((out.risk >= 0) & (out.risk <= 1))
    assert torch.all(out.risk[:, 1:] >= out.risk[:, :-1])
    assert torch.all(out.risk_logit[:, 1:] >= out.risk_logit[:, :-1])


def test_cumulative_layer_against_mirai_matrix_form() -> None:
    # Reference: Mirai's Cumulative_Probability_Layer, logits = hazards @ triu(ones) + base
    layer = CumulativeProbabilityLayer(2, 3, "relu")
    with torch.no_grad():
        layer.hazard_fc.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]]))
        layer.hazard_fc.bias.zero_()
        layer.base_hazard_fc.weight.copy_(torch.tensor([[0.0, -1.0]]))
        layer.base_hazard_fc.bias.zero_()
    hazards, logits, _ = layer(torch.tensor([[1.0, 1.0]]))
    # by hand: raw hazards (1, -1, 2) -> ReLU (1, 0, 2); base -1 -> logits (0, 0, 2)
    torch.testing.assert_close(hazards, torch.tensor([[1.0, 0.0, 2.0]]))
    torch.testing.assert_close(logits, torch.tensor([[0.0, 0.0, 2.0]]))
    mirai = hazards @ torch.triu(torch.ones(3, 3)) - 1.0
    torch.testing.assert_close(logits, mirai)


def test_softplus_hazards_by_hand_and_no_year_can_die() -> None:
    layer = CumulativeProbabilityLayer(1, 2, "softplus")
    with torch.no_grad():
        layer.hazard_fc.weight.copy_(torch.tensor([[1.0], [1.0]]))
        layer.hazard_fc.bias.copy_(torch.tensor([0.0, -30.0]))
        layer.base_hazard_fc.weight.zero_()
        layer.base_hazard_fc.bias.fill_(-2.0)
    x = torch.tensor([[0.0]])
    hazards, logits, _ = layer(x)
    # by hand: softplus(0) = ln 2; softplus(-30) = ln(1 + e^-30) ~ 9.4e-14
    expected = torch.tensor([[math.log(2.0), math.log1p(math.exp(-30.0))]])
    torch.testing.assert_close(hazards, expected)
    torch.testing.assert_close(logits, torch.cumsum(expected, dim=1) - 2.0)
    # year 2's pre-activation is -30: ReLU would give its weights no gradient at all
    logits[0, 1].backward()
    assert layer.hazard_fc.bias.grad[1] > 0
    relu = CumulativeProbabilityLayer(1, 2, "relu")
    relu.load_state_dict(layer.state_dict())
    relu(x)[1][0, 1].backward()
    assert relu.hazard_fc.bias.grad[1] == 0


def test_unknown_hazard_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="tanh"):
        CumulativeProbabilityLayer(2, 3, "tanh")


@pytest.mark.parametrize("fusion", ["attention", "mean"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_missing_levels_content_does_not_change_output(
    tiny_config: ModelConfig, fusion: str, train_mode: bool
) -> None:
    net = _net(dataclasses.replace(tiny_config, fusion=fusion))
    net.train(train_mode)  # LayerNorm only: no batch statistics to leak through
    present = torch.tensor([[True, False, True, True, False]] * 2 + [[True] * 5])
    x = _batch(2) * present[:, :, None, None, None, None]
    noisy = x.clone()
    noisy[~present] = torch.rand_like(noisy[~present]) * 100.0
    a, b = net(x, present), net(noisy, present)
    for name in ("fracture_logit", "risk", "hazards"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=1e-6)
    # a present level's content does change it
    changed = x.clone()
    changed[0, 0] = torch.rand_like(changed[0, 0])
    assert not torch.allclose(net(changed, present).risk[0], a.risk[0])


def test_patient_without_levels_is_refused(tiny_config: ModelConfig) -> None:
    present = torch.ones(3, 5, dtype=torch.bool)
    present[1] = False
    with pytest.raises(ValueError, match="no present level"):
        _net(tiny_config)(_batch(3), present)


def test_bad_input_shape_is_refused(tiny_config: ModelConfig) -> None:
    with pytest.raises(ValueError, match="images must be"):
        _net(tiny_config)(torch.rand(2, 4, 2, 3, 32, 48), torch.ones(2, 4, dtype=torch.bool))


def test_same_seed_same_weights_and_outputs(tiny_config: ModelConfig) -> None:
    present = torch.ones(3, 5, dtype=torch.bool)
    a = _net(tiny_config, seed=5)(_batch(4), present)
    b = _net(tiny_config, seed=5)(_batch(4), present)
    c = _net(tiny_config, seed=6)(_batch(4), present)
    torch.testing.assert_close(a.risk, b.risk, rtol=0, atol=0)
    torch.testing.assert_close(a.fracture_logit, b.fracture_logit, rtol=0, atol=0)
    assert not torch.equal(a.risk, c.risk)


def test_channels_last_gives_the_same_output(tiny_config: ModelConfig) -> None:
    net = _net(tiny_config)
    present = torch.ones(3, 5, dtype=torch.bool)
    x = _batch(7)
    ref = net(x, present)
    out = net.to_channels_last()(x, present)
    torch.testing.assert_close(out.risk, ref.risk, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.fracture_logit, ref.fracture_logit, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_forward_on_device_against_cpu(tiny_config: ModelConfig, device: str) -> None:
    # Reference: the same weights and inputs on CPU in float32
    net = _net(tiny_config)
    present = torch.tensor([[True, True, False, True, True]] * 3)
    x = _batch(8)
    ref = net(x, present)
    out = net.to(device)(x.to(device), present.to(device))
    assert out.risk.device.type == device
    torch.testing.assert_close(out.risk.cpu(), ref.risk, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(out.fracture_logit.cpu(), ref.fracture_logit, rtol=1e-3, atol=1e-3)
    # mixed precision (bf16 autocast) keeps the cumulative risk monotone and in [0, 1]
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        amp = net(x.to(device), present.to(device))
    assert amp.risk.dtype == torch.float32
    assert torch.all((amp.risk >= 0) & (amp.risk <= 1))
    assert torch.all(amp.risk[:, 1:] >= amp.risk[:, :-1])


def test_recalibration_moves_the_risk_and_keeps_order_and_logits() -> None:
    torch.manual_seed(0)
    layer = CumulativeProbabilityLayer(4, 5)
    x = torch.randn(32, 4)
    _, logits, risk = layer(x)
    layer.set_recalibration(-0.3, 0.7)
    _, logits2, risk2 = layer(x)
    assert torch.equal(logits2, logits)  # what the loss trains is untouched
    expected = -torch.expm1(-math.exp(-0.3) * torch.nn.functional.softplus(logits) ** 0.7)
    torch.testing.assert_close(risk2, expected)
    assert not torch.allclose(risk2, risk, atol=1e-3)
    assert bool((risk2[:, 1:] >= risk2[:, :-1]).all())
    for t in range(5):  # each year ranks the patients as before
        assert torch.equal(torch.argsort(risk2[:, t]), torch.argsort(risk[:, t]))
    for bad in [(0.0, 0.0), (0.0, -1.0), (math.nan, 1.0), (0.0, math.inf)]:
        with pytest.raises(ValueError, match="slope > 0"):
            layer.set_recalibration(*bad)
    torch.testing.assert_close(layer.recalibration, torch.tensor([-0.3, 0.7]))
