"""Training augmentation: the study's affine and flip, scanner blur, noise and offset."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models.config import LEGACY_BONE_FEATURES, LEGACY_MUSCLE_FEATURES, ModelConfig
from models.encoder import ConvNeXtEncoder
from models.sampling import feature_names
from models.train import Augmentation, IntensityDraws, augment_features, augment_images

NONE = Augmentation(rotate_deg=0.0, scale=0.0, shift=0.0, flip_p=0.0, blur_sigma=0.0,
                    noise_sd=0.0, offset=0.0)  # fmt: skip


def _images(b: int = 3, value: float = 0.3) -> torch.Tensor:
    """(B, 5, 2, 3, 32, 48): an elliptic body of ``value`` in every image; level 4 empty."""
    yy, xx = np.mgrid[:32, :48]
    disk = ((yy - 16) / 10) ** 2 + ((xx - 24) / 14) ** 2 < 1
    x = torch.zeros(b, 5, 2, 3, 32, 48)
    x[:, :4, :, :, torch.from_numpy(disk)] = value
    return x


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_disabled_is_identity() -> None:
    x = _images()
    out, draws = augment_images(x, Augmentation(enabled=False), _gen())
    assert out is x
    assert not draws.noise_sd.any() and not draws.offset.any()


def test_same_seed_same_transform_and_missing_level_stays_zero() -> None:
    x = _images()
    a, da = augment_images(x, Augmentation(), _gen(7))
    b, db = augment_images(x, Augmentation(), _gen(7))
    c, _ = augment_images(x, Augmentation(), _gen(8))
    assert torch.equal(a, b) and torch.equal(da.offset, db.offset)
    assert not torch.equal(a, c)
    assert not a[:, 4].any(), "a missing (all-zero) level must stay zero"
    assert a.min() >= 0 and a.max() <= 1


def test_blur_keeps_a_uniform_body_uniform_up_to_its_edge() -> None:
    """Normalised convolution: the edge of the mask is not darkened by the zeros outside."""
    x = _images(value=0.3)
    out, _ = augment_images(x, dataclasses.replace(NONE, blur_sigma=2.0), _gen())
    tissue = x != 0
    assert out[~tissue].abs().max() < 1e-4, "blur must not spread into the outside"
    assert torch.allclose(out[tissue], torch.full_like(out[tissue], 0.3), atol=1e-4)


def test_blur_smooths_texture_inside_the_body() -> None:
    x = _images(b=4, value=0.3)
    tissue = x != 0
    noise = torch.randn(x.shape, generator=_gen(1)) * 0.05
    x = torch.where(tissue, x + noise, x)
    out, _ = augment_images(x, dataclasses.replace(NONE, blur_sigma=1.5), _gen(2))
    before = x[tissue].std()
    after = out[tissue].std()
    assert after < 0.8 * before


def test_noise_and_offset_follow_the_draws_per_patient() -> None:
    x = _images(b=6, value=0.4)
    tissue = x != 0
    aug = dataclasses.replace(NONE, noise_sd=0.05, offset=0.02)
    out, draws = augment_images(x, aug, _gen(3))
    assert draws.noise_sd.shape == (6,) and draws.offset.shape == (6,)
    assert (draws.noise_sd >= 0).all() and (draws.noise_sd <= 0.05).all()
    assert (draws.offset.abs() <= 0.02).all() and draws.offset.unique().numel() == 6
    assert out[~tissue].abs().max() < 1e-4, "noise and offset touch the tissue only"
    for i in range(6):
        delta = (out[i] - x[i])[tissue[i]].double()
        assert abs(float(delta.mean()) - float(draws.offset[i])) < 2e-3
        assert abs(float(delta.std()) - float(draws.noise_sd[i])) < 2e-3


def test_features_move_with_the_offset_and_the_noise() -> None:
    # every column an older checkpoint reads, the SD and the height included
    every = ModelConfig(
        intensity_features=True,
        bone_features=LEGACY_BONE_FEATURES,
        muscle_features=LEGACY_MUSCLE_FEATURES,
    )
    names = feature_names(every)
    feats = torch.rand(2, 5, len(names))
    draws = IntensityDraws(
        noise_sd=torch.tensor([0.0, 0.03], dtype=torch.float64),
        offset=torch.tensor([0.01, -0.02], dtype=torch.float64),
    )
    out = augment_features(feats, names, draws)
    col = {n: j for j, n in enumerate(names)}
    for name in ("bone_mean", "bone_median", "muscle_mean", "muscle_median"):
        assert torch.allclose(out[0, :, col[name]], feats[0, :, col[name]] + 0.01)
        assert torch.allclose(out[1, :, col[name]], feats[1, :, col[name]] - 0.02)
    sd = col["bone_sd"]
    assert torch.allclose(out[0, :, sd], feats[0, :, sd])
    assert torch.allclose(out[1, :, sd], torch.sqrt(feats[1, :, sd] ** 2 + 0.03**2))
    for name in ("body_area_cm2", "body_height_cm", "muscle_area_cm2"):
        assert torch.equal(out[..., col[name]], feats[..., col[name]])
    assert not torch.equal(out, feats) and feats.data_ptr() != out.data_ptr()


@pytest.mark.parametrize("seed", [0, 1])
def test_encoder_barely_sees_bone_density(seed: int) -> None:
    """Why the intensity branch exists: LayerNorm makes the encoder nearly scale-blind.

    A body of 50 HU and one of 200 HU (default window) differ by a factor 1.6 in every
    tissue pixel; a freshly initialised encoder's features differ by a few percent.
    """
    torch.manual_seed(seed)
    enc = ConvNeXtEncoder(3, 16, (1, 1, 1)).eval()
    texture = torch.randn(1, 3, 64, 112, generator=_gen(seed)) * 0.02
    yy, xx = np.mgrid[:64, :112]
    disk = torch.from_numpy(((yy - 32) / 20) ** 2 + ((xx - 56) / 30) ** 2 < 1)
    with torch.no_grad():
        low, high = (
            enc(torch.where(disk, (hu + 200) / 1200 + texture, torch.zeros(1))) for hu in (50, 200)
        )
    rel = float((low - high).norm() / high.norm())
    assert rel < 0.1


@pytest.mark.parametrize(
    ("field", "value"), [("blur_sigma", -1.0), ("noise_sd", -0.01), ("offset", -0.01),
                         ("rotate_deg", -5.0), ("flip_p", 1.5), ("thick_mm", -5.0),
                         ("thick_p", 1.5), ("thick_p", -0.1)],
)  # fmt: skip
def test_bad_augmentation_settings_are_refused_by_name(field: str, value: float) -> None:
    from engine.errors import VfriskError

    with pytest.raises(VfriskError) as err:
        Augmentation(**{field: value})
    assert err.value.code == "bad_argument" and field in err.value.message


def test_thick_slice_views_are_on_only_with_a_thickness_a_probability_and_augmentation() -> None:
    assert Augmentation(thick_mm=5.0, thick_p=0.5).thick
    assert not Augmentation(thick_mm=0.0).thick
    assert not Augmentation(thick_mm=5.0, thick_p=0.0).thick
    assert not Augmentation(enabled=False, thick_mm=5.0).thick
