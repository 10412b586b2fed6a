"""Checkpoints: identical outputs after reload; other preprocessing or damage refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.config import load_config
from engine.errors import VfriskError
from models.checkpoint import compute_model_id, load_checkpoint, save_checkpoint
from models.config import ModelConfig
from models.network import FractureNet


def _trained(config: ModelConfig) -> FractureNet:
    torch.manual_seed(0)
    net = FractureNet(config)
    with torch.no_grad():  # move off the initialisation so every tensor matters
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    present = torch.tensor([[True, False, True, True, True], [True] * 5])
    return torch.rand(2, 5, 2, 3, 32, 48, generator=g), present


def test_checkpoint_reload_gives_identical_outputs(
    tmp_path: Path, tiny_config: ModelConfig
) -> None:
    net = _trained(tiny_config)
    net.survival.set_recalibration(-0.2, 0.8)  # a buffer: it travels with the weights
    path = tmp_path / "sub" / "model.pt"
    model_id = save_checkpoint(net, path, preprocessing_version="pp1", metadata={"epoch": 3})
    ck = load_checkpoint(path, preprocessing_version="pp1")
    assert ck.model_id == model_id and len(model_id) == 16
    assert ck.config == tiny_config
    assert ck.metadata == {"epoch": 3}
    assert not ck.model.training
    x, present = _inputs()
    a, b = net(x, present), ck.model(x, present)
    for name in ("fracture_logit", "hazards", "risk"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)


def _rewrite(path: Path, edit) -> None:
    """Edit a checkpoint's tensors and give it the model id they make (a consistent file)."""
    blob = torch.load(path, weights_only=True)
    edit(blob["state_dict"])
    config = ModelConfig.from_dict(blob["config"])
    blob["model_id"] = compute_model_id(config, blob["state_dict"], blob["preprocessing_version"])
    torch.save(blob, path)


def test_a_file_from_before_the_recalibration_loads_with_none(
    tmp_path: Path, tiny_config: ModelConfig
) -> None:
    path = tmp_path / "old.pt"
    net = _trained(tiny_config)
    save_checkpoint(net, path, preprocessing_version="pp1")
    _rewrite(path, lambda state: state.pop("survival.recalibration"))
    old_id = torch.load(path, weights_only=True)["model_id"]
    ck = load_checkpoint(path, preprocessing_version="pp1")
    assert ck.model_id == old_id  # the id of the file as written
    torch.testing.assert_close(ck.model.survival.recalibration, torch.tensor([0.0, 1.0]))
    x, present = _inputs()
    torch.testing.assert_close(ck.model(x, present).risk, net(x, present).risk, rtol=0, atol=0)
    # any other gap or surplus is another network: refused
    _rewrite(path, lambda state: state.update(extra=torch.zeros(2)))
    with pytest.raises(VfriskError, match="unexpected \\['extra'\\]") as err:
        load_checkpoint(path, preprocessing_version="pp1")
    assert err.value.code == "checkpoint_mismatch"
    # a tensor of another shape (another feature set, say) is refused the same way
    _rewrite(path, lambda state: (state.pop("extra"), state.update(level_embedding=torch.zeros(2))))
    with pytest.raises(VfriskError, match="level_embedding") as err:
        load_checkpoint(path, preprocessing_version="pp1")
    assert err.value.code == "checkpoint_mismatch"
    _rewrite(path, lambda state: state.pop("level_embedding"))
    with pytest.raises(
        VfriskError, match="missing \\['level_embedding', 'survival\\.recalibration'\\]"
    ):
        load_checkpoint(path, preprocessing_version="pp1")


def test_model_id_depends_on_weights_and_preprocessing(tiny_config: ModelConfig) -> None:
    state = _trained(tiny_config).state_dict()
    base = compute_model_id(tiny_config, state, "pp1")
    assert base == compute_model_id(tiny_config, dict(state), "pp1")
    assert base != compute_model_id(tiny_config, state, "pp2")
    changed = dict(state)
    changed["level_embedding"] = state["level_embedding"] + 1e-3
    assert base != compute_model_id(tiny_config, changed, "pp1")


def test_other_preprocessing_version_is_refused(tmp_path: Path, tiny_config: ModelConfig) -> None:
    path = tmp_path / "old.pt"
    save_checkpoint(_trained(tiny_config), path, preprocessing_version="pp0")
    current = load_config()["preprocessing"]["version"]
    assert current != "pp0"
    with pytest.raises(VfriskError) as err:
        load_checkpoint(path)  # checked against the engine's current version
    assert err.value.code == "checkpoint_mismatch"
    assert "'pp0'" in str(err.value) and repr(current) in str(err.value)


def test_damaged_checkpoint_is_refused(tmp_path: Path, tiny_config: ModelConfig) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(_trained(tiny_config), path, preprocessing_version="pp1")
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["level_embedding"] += 1.0
    torch.save(blob, path)
    with pytest.raises(VfriskError, match="do not match model id"):
        load_checkpoint(path, preprocessing_version="pp1")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(VfriskError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt", preprocessing_version="pp1")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
