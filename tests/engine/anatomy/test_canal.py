"""The spinal canal reading: the scan's internal HU reference recovers a scanner's offset.

The generator's sites read +6 HU (ext_a) and -8 HU (ext_b) against the development
site (``sample_data/site_profiles.toml``); the canal's content (fluid 12 HU, cord 18-32
HU) is the same in every patient, so the difference of the readings shows the offset.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine.anatomy.canal import canal_hu
from engine.anatomy.labels import Segmentation
from engine.anatomy.segment import segment
from engine.geometry import Grid
from engine.load import load_volume
from engine.synth.cohort import SynthRequest, main_series, series_files, synthesize
from engine.synth.profiles import load_profiles


@pytest.fixture(scope="module")
def readings(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    cohort = tmp_path_factory.mktemp("canal") / "c"
    synthesize(
        SynthRequest(out=cohort, patients=12, sites="dev:1,ext_a:1,ext_b:1", seed=7373,
                     resolution="low")
    )  # fmt: skip
    site = pd.read_csv(cohort / "truth" / "patients.csv").set_index("patient_id")["site"]
    rows = []
    for row in main_series(cohort).itertuples():
        volume = load_volume(series_files(cohort, row.series_uid))
        seg = segment(volume)
        for level, value in canal_hu(volume.hu, seg).items():
            rows.append((site[row.patient_id], row.patient_id, level, value))
        shifted = canal_hu(volume.hu + np.float32(10.0), seg)
        for level, value in canal_hu(volume.hu, seg).items():
            if math.isfinite(value):  # HU are integers: the median moves by 10 +- 1
                assert shifted[level] == pytest.approx(value + 10.0, abs=1.0)
    return pd.DataFrame(rows, columns=["site", "patient", "level", "hu"])


def test_levels_are_read_in_the_fluid_range(readings: pd.DataFrame) -> None:
    # a collapsed body at 5 mm may give no reading (NaN), never a wrong one
    assert readings.hu.notna().mean() >= 0.9
    read = readings.hu.dropna()
    assert read.between(-5.0, 45.0).all(), readings[~readings.hu.between(-5.0, 45.0)]


def test_the_readings_recover_the_sites_offsets(readings: pd.DataFrame) -> None:
    profiles = load_profiles()
    dev = readings[readings.site == "dev"].groupby("level").hu.median()
    for name in ("ext_a", "ext_b"):
        ext = readings[(readings.site == name) & readings.hu.notna()]
        offset = float(np.median(ext.hu.values - dev.loc[ext.level].values))
        truth = profiles[name].hu_offset - profiles["dev"].hu_offset
        assert offset == pytest.approx(truth, abs=2.5), (name, offset, truth)


def test_no_reading_without_bodies_or_without_fluid() -> None:
    grid = Grid(origin_xyz=(0.0, 0.0, 0.0), spacing_zyx=(3.0, 1.0, 1.0), shape_zyx=(12, 60, 60))
    labels = np.zeros(grid.shape_zyx, np.uint8)
    assert (
        canal_hu(np.zeros(grid.shape_zyx, np.float32), Segmentation(labels, grid, (), (), "x"))
        == {}
    )
    labels[2:10, 10:30, 20:40] = 3  # an L2 body
    seg = Segmentation(labels, grid, ("L2",), (), "builtin")
    assert canal_hu(np.full(grid.shape_zyx, 15.0, np.float32), seg) == {"L2": 15.0}
    assert math.isnan(canal_hu(np.full(grid.shape_zyx, 1000.0, np.float32), seg)["L2"])
    with pytest.raises(ValueError, match="differ"):
        canal_hu(np.zeros((3, 3, 3), np.float32), seg)
