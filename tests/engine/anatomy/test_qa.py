"""QA: the per-series PNG and the plausibility flags."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from engine.anatomy.labels import Segmentation
from engine.anatomy.masks import load_masks
from engine.anatomy.qa import qa_flags, qa_png
from engine.load import load_volume
from engine.synth.cohort import SynthRequest, synthesize

SEED = 3


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("qa")
    out = root / "cohort"
    synthesize(SynthRequest(out, patients=1, sites="dev", seed=SEED))
    series = pd.read_csv(out / "truth" / "series.csv")
    row = series[(series["kind"] == "axial") & series["description"].str.contains("SOFT")].iloc[0]
    vol = load_volume(sorted(p for p in (out / "archive" / row["folder"]).iterdir()))
    shutil.copy(out / "truth" / row["patient_id"] / "segmentation.nii.gz",
                root / f"{row['series_uid']}.nii.gz")  # fmt: skip
    return row["series_uid"], vol, load_masks(root, row["series_uid"], vol.grid)


def _with(seg: Segmentation, labels: np.ndarray) -> Segmentation:
    return Segmentation(labels, seg.grid, seg.levels, seg.flags, seg.source)


def test_plausible_segmentation_has_no_flags_and_png_is_written(
    case: tuple, tmp_path: Path
) -> None:
    uid, vol, seg = case
    assert qa_flags(seg) == ()
    path = qa_png(vol.hu, seg, tmp_path / "qa" / f"{uid}.png", title=uid)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "P"
        assert image.width > 600 and image.height > 400
        pixels = np.asarray(image.convert("RGB"))
    # the level and muscle outlines are there (pure colours of the palette)
    assert (np.all(pixels == (145, 30, 180), axis=-1)).sum() > 20  # iliopsoas_left
    assert (np.all(pixels == (230, 25, 75), axis=-1)).sum() > 20  # T12
    assert pixels.std() > 20


def test_flags_fire_on_an_implausible_segmentation(case: tuple, tmp_path: Path) -> None:
    uid, vol, seg = case
    swapped = seg.labels.copy()
    swapped[seg.labels == 1], swapped[seg.labels == 5] = 5, 1  # T12 <-> L4
    assert "qa_levels_order" in qa_flags(_with(seg, swapped))
    tiny = seg.labels.copy()
    l2 = np.argwhere(seg.labels == 3)
    keep = l2[: len(l2) // 10]
    tiny[seg.labels == 3] = 0
    tiny[tuple(keep.T)] = 3  # a tenth of a body
    assert "qa_body_volume_L2" in qa_flags(_with(seg, tiny))
    no_muscle = np.where(np.isin(seg.labels, (11, 12, 13, 14)), 0, seg.labels).astype(np.uint8)
    flags = qa_flags(_with(seg, no_muscle))
    assert "qa_muscle_area_L3" in flags
    path = qa_png(vol.hu, _with(seg, swapped), tmp_path / "bad.png", flags=flags)
    assert path.stat().st_size > 1000
