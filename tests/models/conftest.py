"""Shared builders of the model tests: a tiny network and hand-made model inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from engine.anatomy.inputs import ModelInputs
from models.config import ModelConfig

LEVELS = ("T12", "L1", "L2", "L3", "L4")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny tensors: one thread is fastest, and busy cores make OpenMP spin (10x slower).

    Also makes CPU results independent of the machine's core count.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config() -> ModelConfig:
    """A network small enough for CPU tests (3 stages of width 8, 16, 32)."""
    return ModelConfig(
        width=8, depth=(1, 1, 1), triplets_per_level=2, triplet_spacing=3, train_window=8,
        dropout=0.0, layer_scale_init=0.1,
    )  # fmt: skip


@pytest.fixture
def make_inputs() -> Callable[..., ModelInputs]:
    """Build a :class:`ModelInputs` with random patches (absent levels all zero)."""

    def build(
        seed: int,
        present: tuple[bool, ...] = (True,) * 5,
        shape: tuple[int, int, int] = (12, 32, 48),
        dtype: str = "float16",
        offset: float = 0.0,
    ) -> ModelInputs:
        rng = np.random.default_rng(seed)
        keep = np.array(present, dtype=bool)
        bone = np.clip(offset + rng.random((5, *shape)), 0, 1) * keep[:, None, None, None]
        muscle = np.clip(bone + 0.2 * rng.random((5, *shape)), 0, 1) * keep[:, None, None, None]
        if dtype == "uint8":
            bone_a, muscle_a = (np.rint(a * 255).astype(np.uint8) for a in (bone, muscle))
        else:
            bone_a, muscle_a = bone.astype(np.float16), muscle.astype(np.float16)
        return ModelInputs(
            series_uid=f"1.2.3.{seed}",
            preprocessing_version="pp1",
            settings_digest="test",
            levels=LEVELS,
            bone=bone_a,
            bone_muscle=muscle_a,
            level_present=keep,
            spacing_zyx_mm=(2.25, 2.0, 2.0),
            centres_xyz=np.where(keep[:, None], 0.0, np.nan) * np.ones((5, 3)),
            intensity="fixed_window",
        )

    return build
