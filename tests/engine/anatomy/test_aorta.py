"""Contrast from the aorta: the reading separates enhanced from plain scans of a cohort.

The generator's truth says which patients had portal-venous contrast (aorta 150-200 HU)
and which did not (35-48 HU); a cohort with both is generated with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engine.anatomy.aorta import aorta_hu
from engine.anatomy.biomarkers import CONTRAST_AORTA_HU
from engine.anatomy.labels import Segmentation
from engine.anatomy.segment import segment
from engine.geometry import Grid
from engine.load import load_volume
from engine.synth.cohort import SynthRequest, main_series, series_files, synthesize


def test_aorta_reading_tells_contrast_from_truth(tmp_path: Path) -> None:
    cohort = tmp_path / "c"
    synthesize(SynthRequest(out=cohort, patients=8, sites="dev:1", seed=5151, resolution="low"))
    truth = pd.read_csv(cohort / "truth" / "patients.csv").set_index("patient_id")["contrast"]
    assert truth.any() and not truth.all(), "the seed must give both kinds of scan"
    for row in main_series(cohort).itertuples():
        volume = load_volume(series_files(cohort, row.series_uid))
        value = aorta_hu(volume.hu, segment(volume))
        assert value is not None
        if truth[row.patient_id]:
            assert 130.0 <= value <= 220.0, (row.patient_id, value)
        else:
            assert 25.0 <= value <= 70.0, (row.patient_id, value)
        assert (value >= CONTRAST_AORTA_HU) == bool(truth[row.patient_id])


def test_no_reading_without_levels() -> None:
    grid = Grid(origin_xyz=(0.0, 0.0, 0.0), spacing_zyx=(3.0, 1.0, 1.0), shape_zyx=(20, 30, 30))
    seg = Segmentation(np.zeros(grid.shape_zyx, np.uint8), grid, (), (), "builtin")
    assert aorta_hu(np.full(grid.shape_zyx, 40.0, np.float32), seg) is None
