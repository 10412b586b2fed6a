"""Cropping to the anatomy changes costs, not results."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engine.anatomy import PreprocessingSettings, measure_biomarkers, qa_flags, segment
from engine.anatomy.aorta import aorta_hu
from engine.anatomy.canal import canal_hu
from engine.config import load_config
from engine.geometry import Grid
from engine.load import load_volume
from engine.prepare import crop_to_anatomy, prepare_volume
from engine.synth.cohort import main_series, series_files

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "example"


def test_grid_crop_keeps_patient_positions() -> None:
    grid = Grid(
        origin_xyz=(-100.0, -50.0, 20.0), spacing_zyx=(2.5, 0.8, 0.7), shape_zyx=(40, 60, 80)
    )
    box = (slice(3, 10), slice(5, 60), slice(0, 7))
    sub = grid.crop(box)
    assert sub.shape_zyx == (7, 55, 7)
    assert sub.to_patient((0, 0, 0)) == pytest.approx(grid.to_patient((3, 5, 0)))
    assert sub.to_patient((6, 54, 6)) == pytest.approx(grid.to_patient((9, 59, 6)))
    with pytest.raises(ValueError, match="non-empty"):
        grid.crop((slice(5, 5), slice(None), slice(None)))


def test_cropped_biomarkers_equal_uncropped() -> None:
    row = main_series(SAMPLE).iloc[0]
    volume = load_volume(series_files(SAMPLE, row.series_uid))
    seg = segment(volume)
    hu, cropped = crop_to_anatomy(volume.hu, seg)
    assert hu.size < volume.hu.size  # the low-resolution sample is already cut near the spine
    assert hu.shape == cropped.labels.shape == cropped.grid.shape_zyx
    assert int((cropped.labels > 0).sum()) == int((seg.labels > 0).sum())
    whole = measure_biomarkers(
        volume.hu, seg, "s", aorta_hu=aorta_hu(volume.hu, seg), canal_hu=canal_hu(volume.hu, seg)
    )
    settings = PreprocessingSettings.from_config(load_config())
    prepared = prepare_volume(volume, "s", settings)
    assert dataclasses.asdict(prepared.biomarkers) == dataclasses.asdict(whole)
    assert set(qa_flags(seg)) <= set(prepared.qa_flags)
    assert np.isfinite(prepared.biomarkers.l1_trabecular_hu)
