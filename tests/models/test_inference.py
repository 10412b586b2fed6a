"""models.inference.predict: order, batch invariance, heads, refusal, CPU vs CUDA."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from engine.anatomy.inputs import ModelInputs
from models.config import ModelConfig
from models.inference import predict
from models.network import FractureNet


def _net(config: ModelConfig, **overrides: object) -> FractureNet:
    torch.manual_seed(0)
    return FractureNet(ModelConfig(**{**config.to_dict(), **overrides})
                       if overrides else config)  # fmt: skip


def test_predictions_keep_input_order_and_do_not_depend_on_the_batch(
    tiny_config: ModelConfig, make_inputs: Callable[..., ModelInputs]
) -> None:
    net = _net(tiny_config)
    inputs = [make_inputs(s, present=(True, True, s % 2 == 0, True, True)) for s in range(5)]
    one = predict(net, inputs, batch_size=1)
    many = predict(net, inputs, batch_size=3)
    assert [p.series_uid for p in many] == [x.series_uid for x in inputs]
    for a, b in zip(one, many, strict=True):
        assert a.p_fracture == pytest.approx(b.p_fracture, abs=1e-6)
        assert np.allclose(a.risk, b.risk, atol=1e-6)
        assert 0 <= a.p_fracture <= 1
        risk = np.array(a.risk)
        assert len(risk) == tiny_config.max_followup
        assert np.all((risk >= 0) & (risk <= 1)) and np.all(np.diff(risk) >= 0)
    assert not net.training  # predict puts the model in eval mode


def test_single_task_models_leave_the_other_output_empty(
    tiny_config: ModelConfig, make_inputs: Callable[..., ModelInputs]
) -> None:
    x = [make_inputs(1)]
    detection = predict(_net(tiny_config, task="detection"), x)[0]
    survival = predict(_net(tiny_config, task="survival"), x)[0]
    assert detection.risk is None and detection.p_fracture is not None
    assert survival.p_fracture is None and len(survival.risk) == tiny_config.max_followup


def test_a_series_without_any_level_is_refused_by_name(
    tiny_config: ModelConfig, make_inputs: Callable[..., ModelInputs]
) -> None:
    empty = make_inputs(3, present=(False,) * 5)
    with pytest.raises(ValueError, match=empty.series_uid):
        predict(_net(tiny_config), [make_inputs(1), empty])


@pytest.mark.gpu
def test_cuda_bf16_predictions_match_cpu_float32(
    tiny_config: ModelConfig, make_inputs: Callable[..., ModelInputs]
) -> None:
    net = _net(tiny_config)
    inputs = [make_inputs(s) for s in range(8)]
    cpu = predict(net, inputs)
    gpu = predict(net.to("cuda"), inputs, batch_size=4)
    for a, b in zip(cpu, gpu, strict=True):
        # bf16 keeps 8 bits of mantissa: probabilities agree to about 1e-2
        assert a.p_fracture == pytest.approx(b.p_fracture, abs=2e-2)
        assert np.allclose(a.risk, b.risk, atol=2e-2)
