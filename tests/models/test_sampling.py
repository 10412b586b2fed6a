"""Slice triplets: centred for evaluation, random and seeded for training."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from engine.anatomy.inputs import ModelInputs
from models.config import ModelConfig
from models.sampling import (
    eval_centres,
    random_centres,
    sample_triplets,
    take_triplets,
    to_batch,
)


def test_eval_centres_against_hand_computed() -> None:
    # 32 slices: middle 15.5; 3 triplets 4 apart -> 11.5, 15.5, 19.5 -> round half up
    np.testing.assert_array_equal(eval_centres(32, 3, 4), [12, 16, 20])
    # 11 slices: middle 5; spacing 3 -> 2, 5, 8
    np.testing.assert_array_equal(eval_centres(11, 3, 3), [2, 5, 8])
    # clipped so a triplet never leaves the patch
    np.testing.assert_array_equal(eval_centres(5, 3, 10), [1, 2, 3])


def test_random_centres_seeded_sorted_and_central() -> None:
    a = random_centres(32, 5, 3, 16, np.random.default_rng(3))
    b = random_centres(32, 5, 3, 16, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 3)
    assert np.all(np.diff(a, axis=1) >= 0)
    # central 16 of 32 slices: 8..23
    many = random_centres(32, 200, 3, 16, np.random.default_rng(4))
    assert many.min() == 8 and many.max() == 23


def test_take_triplets_reads_adjacent_slices() -> None:
    vol = np.arange(2 * 6).reshape(2, 6, 1, 1).astype(np.uint8) * 10
    out = take_triplets(vol, np.array([[1, 4], [2, 2]]))
    assert out.shape == (2, 2, 3, 1, 1) and out.dtype == np.float32
    # level 0 slices 0..5 hold 0..50, level 1 holds 60..110 (uint8 / 255)
    np.testing.assert_allclose(out[0, 0, :, 0, 0], np.array([0, 10, 20]) / 255, rtol=1e-6)
    np.testing.assert_allclose(out[0, 1, :, 0, 0], np.array([30, 40, 50]) / 255, rtol=1e-6)
    np.testing.assert_allclose(out[1, 1, :, 0, 0], np.array([70, 80, 90]) / 255, rtol=1e-6)
    with pytest.raises(ValueError, match="centres"):
        take_triplets(vol, np.array([0, 2]))


@pytest.mark.parametrize("variant", ["bone", "bone_muscle"])
def test_sample_triplets_picks_the_configured_variant(
    make_inputs: Callable[..., ModelInputs], tiny_config: ModelConfig, variant: str
) -> None:
    inputs = make_inputs(0, present=(True, False, True, True, True))
    config = dataclasses.replace(tiny_config, input_variant=variant)
    sample = sample_triplets(inputs, config)
    source = inputs.bone if variant == "bone" else inputs.bone_muscle
    c = eval_centres(12, 2, 3)  # 12 slices: middle 5.5 -> 4, 7
    np.testing.assert_array_equal(c, [4, 7])
    np.testing.assert_array_equal(sample.images[2, 1], source[2, 6:9].astype(np.float32))
    assert sample.images.shape == (5, 2, 3, 32, 48)
    np.testing.assert_array_equal(sample.level_present, inputs.level_present)
    assert not sample.images[1].any()


def test_sample_triplets_uint8_is_scaled_to_unit_interval(
    make_inputs: Callable[..., ModelInputs], tiny_config: ModelConfig
) -> None:
    u8 = sample_triplets(make_inputs(1, dtype="uint8"), tiny_config)
    f16 = sample_triplets(make_inputs(1), tiny_config)
    assert u8.images.max() <= 1.0
    np.testing.assert_allclose(u8.images, f16.images, atol=2.5 / 255)


def test_training_triplets_are_reproducible_under_a_seed(
    make_inputs: Callable[..., ModelInputs], tiny_config: ModelConfig
) -> None:
    inputs = make_inputs(2)
    a = sample_triplets(inputs, tiny_config, np.random.default_rng(11))
    b = sample_triplets(inputs, tiny_config, np.random.default_rng(11))
    c = sample_triplets(inputs, tiny_config, np.random.default_rng(12))
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.centres, c.centres)


def test_to_batch_shapes_and_refusals(
    make_inputs: Callable[..., ModelInputs], tiny_config: ModelConfig
) -> None:
    samples = [sample_triplets(make_inputs(s), tiny_config) for s in range(3)]
    batch = to_batch(samples)
    assert batch.images.shape == (3, 5, 2, 3, 32, 48) and batch.images.dtype == torch.float32
    assert batch.level_present.dtype == torch.bool and batch.level_present.shape == (3, 5)
    empty = sample_triplets(make_inputs(9, present=(False,) * 5), tiny_config)
    with pytest.raises(ValueError, match="no present level"):
        to_batch([empty])
    wrong = dataclasses.replace(tiny_config, n_levels=4)
    with pytest.raises(ValueError, match="levels"):
        sample_triplets(make_inputs(0), wrong)
