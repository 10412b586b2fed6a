"""ModelConfig: validation and the dict round trip used by checkpoints."""

from __future__ import annotations

import json

import pytest

from engine.errors import VfriskError
from models.config import ModelConfig


def test_config_round_trips_through_json() -> None:
    config = ModelConfig.convnext_tiny(input_variant="bone", task="survival", weighting="fixed")
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.depth == (3, 3, 9, 3) and again.feature_dim == 768


@pytest.mark.parametrize(
    "bad",
    [
        {"task": "segmentation"},
        {"input_variant": "muscle"},
        {"weighting": "nash"},
        {"width": 0},
        {"depth": ()},
        {"max_followup": 0},
        {"dropout": 1.0},
        {"hazard_activation": "tanh"},
        {"bone_features": ("bone_texture",)},
        {"bone_features": ()},
        {"bone_features": ("bone_mean", "bone_mean")},
        {"muscle_features": ("muscle_sd",)},
        {"muscle_features": ("muscle_mean", "muscle_mean")},
    ],
)
def test_bad_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(VfriskError) as err:
        ModelConfig(**bad)
    assert err.value.code == "bad_config"


def test_hazard_activation_defaults_to_softplus_and_old_configs_read_as_relu() -> None:
    new = ModelConfig()
    assert new.hazard_activation == "softplus"
    assert new.to_dict()["hazard_activation"] == "softplus"
    assert ModelConfig.from_dict(new.to_dict()) == new
    # a checkpoint written before the key existed: Mirai's ReLU, serialised as it was
    old = new.to_dict()
    del old["hazard_activation"]
    relu = ModelConfig.from_dict(old)
    assert relu.hazard_activation == "relu"
    assert relu.to_dict() == old


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(VfriskError, match="unknown keys"):
        ModelConfig.from_dict({"widht": 32})


def test_task_flags() -> None:
    assert ModelConfig(task="detection").has_detection
    assert not ModelConfig(task="detection").has_survival
    assert ModelConfig().has_detection and ModelConfig().has_survival


def test_package_names_resolve_and_import_torch_lazily() -> None:
    import subprocess
    import sys

    import models

    for name in models.__all__:
        assert getattr(models, name) is not None
    code = (
        "import sys, models, models.config, models.losses, models.sampling; "
        "models.ModelConfig(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_request_takes_the_hazard_activation_from_train_config(tmp_path) -> None:
    from engine.config import load_config
    from models.train import TrainRequest

    config = load_config()
    default = TrainRequest.from_config(config, db=tmp_path / "x.duckdb").model
    assert default.hazard_activation == config["train"]["hazard_activation"] == "softplus"
    relu = TrainRequest.from_config(config, db=tmp_path / "x.duckdb", hazard_activation="relu")
    assert relu.model.hazard_activation == "relu"


def test_bone_features_default_and_older_checkpoints_read_all_six() -> None:
    from models.config import BONE_FEATURES, LEGACY_BONE_FEATURES

    new = ModelConfig(intensity_features=True)
    assert new.bone_features == BONE_FEATURES
    assert new.to_dict()["bone_features"] == list(BONE_FEATURES)
    assert ModelConfig.from_dict(json.loads(json.dumps(new.to_dict()))) == new
    # a checkpoint written before the key existed: the branch read all six
    old = new.to_dict()
    del old["bone_features"]
    assert ModelConfig.from_dict(old).bone_features == LEGACY_BONE_FEATURES
    legacy = ModelConfig(intensity_features=True, bone_features=LEGACY_BONE_FEATURES)
    assert "bone_features" not in legacy.to_dict()  # its model id is unchanged
    assert "bone_features" not in ModelConfig().to_dict()  # no branch, no key


def test_muscle_features_older_checkpoints_read_all_three() -> None:
    from models.config import LEGACY_MUSCLE_FEATURES

    legacy = ModelConfig(intensity_features=True, muscle_features=LEGACY_MUSCLE_FEATURES)
    assert "muscle_features" not in legacy.to_dict()  # the ids of older checkpoints verify
    assert ModelConfig.from_dict(legacy.to_dict()).muscle_features == LEGACY_MUSCLE_FEATURES
    for chosen in (("muscle_area_cm2", "muscle_median"), ()):
        mine = ModelConfig(intensity_features=True, muscle_features=chosen)
        assert mine.to_dict()["muscle_features"] == list(chosen)
        assert ModelConfig.from_dict(json.loads(json.dumps(mine.to_dict()))) == mine
    assert "muscle_features" not in ModelConfig().to_dict()  # no branch, no key


def test_train_request_reads_bone_features_and_refuses_unknown_ones(tmp_path) -> None:
    from engine.config import load_config
    from models.train import TrainRequest

    config = load_config()
    default = TrainRequest.from_config(config, db=tmp_path / "x.duckdb").model
    assert default.bone_features == tuple(config["train"]["bone_features"])
    older = TrainRequest.from_config(
        config, db=tmp_path / "x.duckdb", bone_features=["bone_median", "bone_sd"]
    )
    assert older.model.bone_features == ("bone_median", "bone_sd")
    with pytest.raises(VfriskError) as err:
        TrainRequest.from_config(config, db=tmp_path / "x.duckdb", bone_features=["texture"])
    assert err.value.code == "bad_config" and "bone_features" in err.value.message
    assert default.muscle_features == tuple(config["train"]["muscle_features"])
    mine = TrainRequest.from_config(
        config, db=tmp_path / "x.duckdb", muscle_features=["muscle_median"]
    )
    assert mine.model.muscle_features == ("muscle_median",)
    with pytest.raises(VfriskError) as err:
        TrainRequest.from_config(config, db=tmp_path / "x.duckdb", muscle_features=["fat"])
    assert err.value.code == "bad_config" and "muscle_features" in err.value.message
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nbone_features = "bone_mean"\n')
    with pytest.raises(VfriskError) as err:
        load_config(bad)
    assert err.value.code == "bad_config" and "bone_features" in err.value.message
