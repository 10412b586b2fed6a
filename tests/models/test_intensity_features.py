"""The quantitative intensity branch (issue 6): features, masking, variants, checkpoints."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.anatomy.inputs import ModelInputs
from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import ALL_BONE_FEATURES, LEGACY_MUSCLE_FEATURES, ModelConfig
from models.inference import predict
from models.network import FractureNet
from models.sampling import (
    REFERENCE_FEATURES,
    feature_names,
    intensity_features,
    sample_triplets,
    to_batch,
)

LEVELS = ("T12", "L1", "L2", "L3", "L4")
#: Every feature the branch can read (older checkpoints read all of them).
ALL = ModelConfig(
    intensity_features=True,
    bone_features=ALL_BONE_FEATURES,
    muscle_features=LEGACY_MUSCLE_FEATURES,
)
WINDOW = (-200.0, 1000.0)  # the default fixed HU window: 1 HU = 1 / 1200 of the scale


def _series(
    seed: int,
    present: tuple[bool, ...] = (True,) * 5,
    muscle_value: float | None = None,
    dtype: str = "float16",
) -> ModelInputs:
    """A box-shaped body in the middle slices, muscle beside it (12 x 32 x 48 patches)."""
    rng = np.random.default_rng(seed)
    keep = np.array(present, dtype=bool)
    shape = (5, 12, 32, 48)
    body = np.zeros(shape, dtype=bool)
    body[:, 3:9, 10:22, 18:30] = True
    muscle = np.zeros(shape, dtype=bool)
    muscle[:, 3:9, 12:20, 4:14] = True
    muscle[:, 3:9, 12:20, 34:44] = True
    image = 0.2 + 0.3 * rng.random(shape)
    if muscle_value is not None:
        image[muscle] = muscle_value
    keep4 = keep[:, None, None, None]
    bone = np.where(body & keep4, image, 0.0)
    both = np.where((body | muscle) & keep4, image, 0.0)
    canal = 15.0 + rng.normal(0.0, 1.0, 5) + np.array([8.0, 8.0, 0.0, 0.0, 0.0])
    return _pack(f"1.2.9.{seed}", bone, both, keep, dtype, canal=np.where(keep, canal, np.nan))


def _pack(
    uid: str,
    bone: np.ndarray,
    both: np.ndarray,
    keep: np.ndarray,
    dtype: str,
    canal: np.ndarray | None = None,
    trabecular: np.ndarray | None = None,
    height_loss: np.ndarray | None = None,
) -> ModelInputs:
    """ModelInputs of [0, 1] patch arrays stored as ``dtype`` (uint8 or float16), read
    through the default fixed HU window, with canal readings ``canal`` (HU)."""
    if dtype == "uint8":
        bone_a, both_a = (np.rint(a * 255).astype(np.uint8) for a in (bone, both))
    else:
        bone_a, both_a = bone.astype(np.float16), both.astype(np.float16)
    return ModelInputs(
        series_uid=uid,
        preprocessing_version="pp1",
        settings_digest="test",
        levels=LEVELS,
        bone=bone_a,
        bone_muscle=both_a,
        level_present=keep,
        spacing_zyx_mm=(2.25, 2.0, 2.0),
        centres_xyz=np.where(keep[:, None], 0.0, np.nan) * np.ones((5, 3)),
        intensity="fixed_window",
        hu_window=WINDOW,
        canal_hu=None if canal is None else np.asarray(canal, dtype=np.float32),
        trabecular_hu=None if trabecular is None else np.asarray(trabecular, dtype=np.float32),
        height_loss=None if height_loss is None else np.asarray(height_loss, dtype=np.float32),
    )


def _hand_made(dtype: str) -> ModelInputs:
    """Level 0 holds a hand-countable body and muscle; level 1 is missing."""
    bone = np.zeros((5, 4, 4, 6), dtype=np.float32)
    both = np.zeros_like(bone)
    bone[0, 1, 0, 0:2] = (0.5, 0.25)  # body: 2 voxels on slice 1 ...
    bone[0, 2, 1, 0:2] = (0.5, 0.25)  # ... and 2 on slice 2
    both[0] = bone[0]
    both[0, 1, 3, 3:5] = (0.125, 0.375)  # muscle: 3 voxels outside the body
    both[0, 2, 3, 5] = 0.125
    for level in (2, 3, 4):  # plain present levels: one body voxel each
        bone[level, 0, 0, 0] = both[level, 0, 0, 0] = 0.5
    canal = np.array([16.0, np.nan, 40.0, np.nan, 28.0])  # L2 unread
    trabecular = np.array([100.0, np.nan, np.nan, 160.0, 130.0])  # L1: cement, say
    height_loss = np.array([0.3, np.nan, np.nan, 0.1, 0.0])  # L1: not measurable
    keep = np.array([True, False, True, True, True])
    return _pack(
        "1.2.9.hand", bone, both, keep, dtype, canal=canal, trabecular=trabecular,
        height_loss=height_loss,
    )  # fmt: skip


@pytest.fixture
def branch_config(tiny_config: ModelConfig) -> ModelConfig:
    return dataclasses.replace(tiny_config, intensity_features=True)


def _perturbed(config: ModelConfig, seed: int = 0) -> FractureNet:
    """A network off its initialisation, with a fitted feature scaling."""
    torch.manual_seed(seed)
    net = FractureNet(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    if config.intensity_features:
        series = [_series(s) for s in range(4)]
        feats = np.stack([intensity_features(x, config) for x in series])
        present = np.stack([x.level_present for x in series])
        net.fit_feature_scaling(torch.from_numpy(feats), torch.from_numpy(present))
    return net.eval()


@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_features_against_hand_computed_values(dtype: str) -> None:
    features = intensity_features(_hand_made(dtype), ALL)
    assert features.shape == (5, len(ALL_BONE_FEATURES) + len(LEGACY_MUSCLE_FEATURES) + 1)
    assert features.dtype == np.float32
    # Level 0 by hand: body values (0.5, 0.25, 0.5, 0.25) on 2 slices of 2.25 mm, pixels
    # of 2 x 2 mm = 0.04 cm2; muscle values (0.125, 0.375, 0.125).
    expected = [
        0.375,  # bone mean
        0.375,  # bone median: mean of the middle two of (0.25, 0.25, 0.5, 0.5)
        0.125,  # bone SD (population)
        4 * 0.04 / 2,  # body area: 4 voxels over 2 slices, cm2
        2 * 2.25 / 10,  # body height: 2 slices, cm
        (100.0 + 200.0) / 1200.0,  # trabecular: 100 HU as measured, on the patch scale
        0.3,  # height loss as measured
        3 * 0.04 / 2,  # muscle area: 3 voxels over the body's 2 slices, cm2
        (0.125 + 0.375 + 0.125) / 3,  # muscle mean
        0.125,  # muscle median
        (16.0 + 200.0) / 1200.0,  # canal: 16 HU in the -200..1000 HU window
    ]
    tol = 1.0 / 255 if dtype == "uint8" else 1e-6  # uint8 rounds intensities to 1/255
    np.testing.assert_allclose(features[0], expected, rtol=0, atol=tol)
    np.testing.assert_array_equal(features[1], 0.0)  # missing level
    # One body voxel of 0.5, no muscle: area 0.04 cm2, height 0.225 cm; no trabecular
    # reading (cement): the bone mean stands in; no height loss measured: 0 (no loss).
    np.testing.assert_allclose(
        features[2], [0.5, 0.5, 0.0, 0.04, 0.225, 0.5, 0.0, 0.0, 0.0, 0.0, 0.2], rtol=0, atol=tol
    )
    assert features[3, ALL_BONE_FEATURES.index("trabecular_mean")] == pytest.approx(0.3)
    assert features[3, ALL_BONE_FEATURES.index("height_loss")] == pytest.approx(0.1)
    assert np.isnan(features[3, -1])  # a present level without a reading
    # a model reads the columns its configuration names, in that order
    default = ModelConfig(intensity_features=True)
    assert feature_names(default)[:4] == (
        "bone_mean", "body_area_cm2", "trabecular_mean", "height_loss",
    )  # fmt: skip
    columns = [feature_names(ALL).index(n) for n in feature_names(default)]
    np.testing.assert_array_equal(
        intensity_features(_hand_made(dtype), default), features[:, columns]
    )
    for mine in (
        dataclasses.replace(default, bone_features=("trabecular_mean", "bone_sd")),
        dataclasses.replace(default, muscle_features=("muscle_median", "muscle_area_cm2")),
        dataclasses.replace(default, muscle_features=()),
    ):
        columns = [feature_names(ALL).index(n) for n in feature_names(mine)]
        got = intensity_features(_hand_made(dtype), mine)
        np.testing.assert_array_equal(got, features[:, columns])


def test_bone_variant_gets_only_bone_features() -> None:
    series = _hand_made("float16")
    for both in (ALL, ModelConfig(intensity_features=True)):
        bone_only = dataclasses.replace(both, input_variant="bone")
        names = both.bone_features
        assert feature_names(bone_only) == names + REFERENCE_FEATURES
        assert feature_names(both) == names + both.muscle_features + REFERENCE_FEATURES
        bone = intensity_features(series, bone_only)
        assert bone.shape == (5, len(names) + 1)
        columns = [*range(len(names)), -1]
        np.testing.assert_array_equal(bone, intensity_features(series, both)[:, columns])


def test_samples_and_batches_carry_features(
    tiny_config: ModelConfig, branch_config: ModelConfig
) -> None:
    series = [_series(0), _series(1, present=(True, True, False, True, True))]
    assert sample_triplets(series[0], tiny_config).features is None
    assert to_batch([sample_triplets(s, tiny_config) for s in series]).features is None
    batch = to_batch([sample_triplets(s, branch_config) for s in series])
    n_features = len(feature_names(branch_config))
    assert batch.features is not None and batch.features.shape == (2, 5, n_features)
    assert batch.features.dtype == torch.float32
    np.testing.assert_array_equal(
        batch.features[1].numpy(), intensity_features(series[1], branch_config)
    )
    with pytest.raises(ValueError, match="some samples have intensity features"):
        to_batch(
            [sample_triplets(series[0], branch_config), sample_triplets(series[1], tiny_config)]
        )


@pytest.mark.parametrize("variant", ["bone", "bone_muscle"])
def test_shapes_with_and_without_branch(tiny_config: ModelConfig, variant: str) -> None:
    series = [_series(s) for s in range(3)]
    present = torch.ones(3, 5, dtype=torch.bool)
    for branch in (False, True):
        config = dataclasses.replace(tiny_config, input_variant=variant, intensity_features=branch)
        batch = to_batch([sample_triplets(s, config) for s in series])
        out = _perturbed(config)(*batch)
        assert out.fracture_logit is not None and out.fracture_logit.shape == (3,)
        assert out.risk is not None and out.risk.shape == (3, config.max_followup)
        assert bool(torch.all(out.risk[:, 1:] >= out.risk[:, :-1]))
        if branch:
            n_features = len(feature_names(config))
            with pytest.raises(ValueError, match="needs features of shape"):
                _perturbed(config)(batch.images, present)
            with pytest.raises(ValueError, match="needs features of shape"):
                _perturbed(config)(batch.images, present, torch.zeros(3, 5, n_features + 1))
        else:
            with pytest.raises(ValueError, match="no intensity branch"):
                _perturbed(config)(batch.images, present, torch.zeros(3, 5, 10))


def test_features_change_the_output(branch_config: ModelConfig) -> None:
    net = _perturbed(branch_config)
    batch = to_batch([sample_triplets(_series(s), branch_config) for s in range(2)])
    assert batch.features is not None
    a = net(*batch)
    b = net(batch.images, batch.level_present, batch.features * 1.5)
    assert not torch.allclose(a.risk, b.risk)  # type: ignore[arg-type]
    assert not torch.allclose(a.fracture_logit, b.fracture_logit)  # type: ignore[arg-type]


def test_missing_levels_features_are_masked(branch_config: ModelConfig) -> None:
    net = _perturbed(branch_config)
    present_pattern = (True, False, True, True, False)
    batch = to_batch([sample_triplets(_series(s, present_pattern), branch_config) for s in (3, 4)])
    assert batch.features is not None
    ref = net(*batch)
    garbage = batch.features.clone()
    garbage[:, 1] = float("nan")
    garbage[:, 4] = 1e6
    out = net(batch.images, batch.level_present, garbage)
    for name in ("fracture_logit", "risk"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=0, atol=0)
    changed = batch.features.clone()
    changed[:, 2] += 1.0  # a present level does count
    assert not torch.allclose(net(batch.images, batch.level_present, changed).risk, ref.risk)  # type: ignore[arg-type]


@pytest.mark.parametrize(("variant", "changes"), [("bone", False), ("bone_muscle", True)])
def test_bone_only_model_ignores_muscle_voxels(
    tiny_config: ModelConfig, variant: str, changes: bool
) -> None:
    # Through the scoring path: only the muscle voxels differ between the two series.
    config = dataclasses.replace(tiny_config, input_variant=variant, intensity_features=True)
    net = _perturbed(config)
    lean, fatty = _series(7, muscle_value=0.45), _series(7, muscle_value=0.15)
    np.testing.assert_array_equal(lean.bone, fatty.bone)
    (a,), (b,) = predict(net, [lean]), predict(net, [fatty])  # one batch row each
    assert (a.risk != b.risk) is changes
    assert (a.p_fracture != b.p_fracture) is changes


def _calibrated(
    config: ModelConfig, feats: np.ndarray, present: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """The network's calibration (models.network module doc) in plain numpy."""
    canal = np.where(present, feats[..., -1], np.nan)
    with warnings.catch_warnings():  # a patient without readings: all-NaN median
        warnings.simplefilter("ignore", RuntimeWarning)
        offset = np.nan_to_num(np.nanmedian(canal - reference, axis=1), nan=0.0)
    out = feats[..., :-1].astype(np.float64)  # the canal column leaves
    moved = [n.endswith(("_mean", "_median")) for n in feature_names(config)[:-1]]
    out[..., moved] -= offset[:, None, None]
    return out


def test_feature_scaling_against_numpy(branch_config: ModelConfig) -> None:
    series = [_series(s, present=(True, s % 2 == 0, True, True, True)) for s in range(5)]
    feats = np.stack([intensity_features(x, branch_config) for x in series])
    present = np.stack([x.level_present for x in series])
    net = FractureNet(branch_config)
    net.fit_feature_scaling(torch.from_numpy(feats), torch.from_numpy(present))
    reference = np.nanmedian(np.where(present, feats[..., -1], np.nan), axis=0)
    np.testing.assert_allclose(net.canal_reference.numpy(), reference, rtol=1e-6)
    rows = _calibrated(branch_config, feats, present, reference)[present]  # present levels only
    sd = rows.std(axis=0)
    np.testing.assert_allclose(net.feature_shift.numpy(), rows.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(net.feature_scale.numpy(), np.where(sd > 1e-8, sd, 1.0), rtol=1e-4)
    # The box body has the same size on every level: a constant feature keeps scale 1.
    assert net.feature_scale[feature_names(branch_config).index("body_area_cm2")] == 1.0
    with pytest.raises(ValueError, match="no intensity branch"):
        FractureNet(
            dataclasses.replace(branch_config, intensity_features=False)
        ).fit_feature_scaling(torch.from_numpy(feats), torch.from_numpy(present))


def _read_offset(x: ModelInputs, hu: float) -> ModelInputs:
    """The same scan on a scanner that reads ``hu`` HU higher: tissue and canal move."""
    scale = 255.0 if x.bone.dtype == np.uint8 else 1.0
    move = hu / (WINDOW[1] - WINDOW[0]) * scale

    def shift(a: np.ndarray) -> np.ndarray:
        return np.where(a != 0, a.astype(np.float64) + move, 0.0).astype(a.dtype)

    return dataclasses.replace(
        x, bone=shift(x.bone), bone_muscle=shift(x.bone_muscle), canal_hu=x.canal_hu + hu
    )


def test_calibration_undoes_a_scanner_offset(branch_config: ModelConfig) -> None:
    net = _perturbed(branch_config)
    series = [_series(s, present=(True, True, s != 2, True, True)) for s in (1, 2)]
    for hu in (-8.0, 6.0, 20.0):
        moved = [_read_offset(x, hu) for x in series]
        a, b = (to_batch([sample_triplets(x, branch_config) for x in xs]) for xs in (series, moved))
        assert a.features is not None and b.features is not None
        means = [n.endswith(("_mean", "_median")) for n in feature_names(branch_config)]
        # as read, every mean and median moved by the offset ...
        np.testing.assert_allclose(
            (b.features - a.features)[..., means][a.level_present], hu / 1200.0, atol=2e-3
        )
        # ... and calibrated they are the development scan's again (float16 rounding)
        torch.testing.assert_close(
            net.calibrate(b.features, b.level_present)[a.level_present],
            net.calibrate(a.features, a.level_present)[a.level_present],
            rtol=0, atol=2e-3,
        )  # fmt: skip


def test_calibration_without_readings_leaves_features_alone(branch_config: ModelConfig) -> None:
    net = _perturbed(branch_config)
    unread = dataclasses.replace(_series(5), canal_hu=np.full(5, np.nan, np.float32))
    study = dataclasses.replace(_series(5), hu_window=None)  # per-patch scaling: no HU scale
    for x in (unread, study):
        batch = to_batch([sample_triplets(x, branch_config)])
        assert batch.features is not None and bool(torch.isnan(batch.features[..., -1]).all())
        out = net.calibrate(batch.features, batch.level_present)
        torch.testing.assert_close(out, batch.features[..., :-1], rtol=0, atol=0)
    # one unread level does not count; the others still give the offset
    x = _series(6)
    one_unread = dataclasses.replace(x, canal_hu=np.where(np.arange(5) == 0, np.nan, x.canal_hu))
    a, b = (to_batch([sample_triplets(s, branch_config)]) for s in (x, one_unread))
    assert a.features is not None and b.features is not None
    canal = a.features[0, :, -1]
    expected = torch.quantile((canal - net.canal_reference)[1:], 0.5)
    got = b.features[0, 1, 0] - net.calibrate(b.features, b.level_present)[0, 1, 0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_branch_checkpoint_reload_gives_identical_outputs(
    tmp_path: Path, branch_config: ModelConfig
) -> None:
    net = _perturbed(branch_config)
    path = tmp_path / "branch.pt"
    model_id = save_checkpoint(net, path, preprocessing_version="pp1")
    ck = load_checkpoint(path, preprocessing_version="pp1")
    assert ck.model_id == model_id and ck.config.intensity_features
    torch.testing.assert_close(ck.model.feature_shift, net.feature_shift, rtol=0, atol=0)
    batch = to_batch([sample_triplets(_series(s), branch_config) for s in range(2)])
    a, b = net(*batch), ck.model(*batch)
    torch.testing.assert_close(a.risk, b.risk, rtol=0, atol=0)
    torch.testing.assert_close(a.fracture_logit, b.fracture_logit, rtol=0, atol=0)


def test_config_without_the_key_loads_without_branch(
    tmp_path: Path, tiny_config: ModelConfig
) -> None:
    stored = tiny_config.to_dict()
    assert "intensity_features" not in stored  # serialised as before the key existed
    assert ModelConfig.from_dict(stored) == tiny_config
    assert not ModelConfig.from_dict(stored).intensity_features
    on = dataclasses.replace(tiny_config, intensity_features=True)
    assert ModelConfig.from_dict(on.to_dict()) == on
    path = tmp_path / "old.pt"
    save_checkpoint(_perturbed(tiny_config), path, preprocessing_version="pp1")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert "intensity_features" not in blob["config"]
    ck = load_checkpoint(path, preprocessing_version="pp1")
    assert ck.model.intensity is None and not ck.config.intensity_features


def test_train_request_takes_the_branch_from_train_config(tmp_path: Path) -> None:
    from engine.config import load_config
    from models.train import TrainRequest

    config = load_config()
    db = tmp_path / "x.duckdb"
    default = TrainRequest.from_config(config, db=db).model
    assert default.intensity_features is bool(config["train"]["intensity_features"])
    for value in (True, False):
        request = TrainRequest.from_config(config, db=db, intensity_features=value)
        assert request.model.intensity_features is value


def test_training_and_scoring_see_the_same_features(tmp_path: Path) -> None:
    """Training keeps one array in memory; the bone_muscle branch needs the bone mask too.

    An earlier version dropped ``bone`` for the bone_muscle variant before measuring: the
    branch trained on bone features of 0 and muscle areas of the whole tissue, then saw
    real values when scoring (5-year risks of 0.85 on fresh development patients). Now
    ``load_examples`` measures the features before it drops an array.
    """
    from engine.anatomy.inputs import save_inputs
    from models.data import Example, load_examples

    config = ModelConfig(input_variant="bone_muscle", intensity_features=True)
    series = [_series(s) for s in (1, 2)]
    examples = [
        Example(
            patient_id=f"P{i}",
            series_uid=x.series_uid,
            site="dev",
            cache_path=save_inputs(x, tmp_path),
            prevalent_vf=0,
            followup_years=3.0,
            event=0,
        )  # fmt: skip
        for i, x in enumerate(series)
    ]
    loaded = load_examples(examples, config=config)
    n_features = len(feature_names(config))
    assert loaded.features is not None and loaded.features.shape == (2, 5, n_features)
    for original, in_memory, measured in zip(series, loaded.inputs, loaded.features, strict=True):
        np.testing.assert_array_equal(intensity_features(original, config), measured)
        np.testing.assert_array_equal(in_memory.bone_muscle, original.bone_muscle)
        assert in_memory.bone.strides == (0,) * 4  # the bone array no longer in memory
    # scoring with the measured features equals scoring the full inputs
    net = _perturbed(config)
    for batch_size in (32, 1):  # one chunk, and one chunk per series
        a = predict(net, series, batch_size=batch_size)
        b = predict(net, loaded.inputs, features=loaded.features, batch_size=batch_size)
        assert [p.risk for p in a] == [p.risk for p in b]
        assert [p.p_fracture for p in a] == [p.p_fracture for p in b]
    # the dropped array cannot be measured from
    with pytest.raises(ValueError, match="bone array is empty"):
        intensity_features(loaded.inputs[0], config)


def test_features_measured_once_give_the_same_batches(branch_config: ModelConfig) -> None:
    """Training measures each series' features once and hands them to every batch."""
    from models.data import Example, make_batch

    series = [_series(s, present=(True, s != 1, True, True, True)) for s in range(3)]
    examples = [
        Example(patient_id=f"P{i}", series_uid=x.series_uid, site="dev",
                cache_path=Path("unused"), prevalent_vf=i % 2, followup_years=3.0, event=0)
        for i, x in enumerate(series)
    ]  # fmt: skip
    feats = np.stack([intensity_features(x, branch_config) for x in series])
    index = np.array([2, 0])
    a = make_batch(examples, series, index, branch_config, np.random.default_rng(4))
    b = make_batch(examples, series, index, branch_config, np.random.default_rng(4), "cpu", feats)
    assert a.batch.features is not None and b.batch.features is not None
    torch.testing.assert_close(a.batch.features, b.batch.features, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(a.batch.images, b.batch.images, rtol=0, atol=0)
