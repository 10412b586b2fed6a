"""Indexed series load by UID: DICOM folders, zip members, and the truth geometry."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.config import load_config
from engine.errors import VfriskError
from engine.index import IndexRequest, Rules, index_archive, load_indexed_series
from engine.load import load_nifti
from engine.store import Store


def test_every_selected_series_loads_on_the_truth_grid(cohort: Path, cohort_db: Store) -> None:
    config = load_config(None)
    selected = cohort_db.query("SELECT series_uid, patient_id FROM series WHERE selected")
    assert len(selected) == 5
    for row in selected.itertuples():
        volume = load_indexed_series(cohort_db, row.series_uid, config)
        truth = load_nifti(cohort / "truth" / row.patient_id / "bodies.nii.gz", labels=True)
        assert volume.grid.shape_zyx == truth.grid.shape_zyx, row.patient_id
        # NIfTI stores geometry as float32, DICOM as decimal strings: equal to 1e-3 mm
        np.testing.assert_allclose(volume.grid.origin_xyz, truth.grid.origin_xyz, atol=1e-3)
        np.testing.assert_allclose(volume.grid.spacing_zyx, truth.grid.spacing_zyx, atol=1e-4)
        assert volume.source == row.series_uid


def test_zipped_series_loads_like_the_folder(cohort: Path, tmp_path: Path) -> None:
    config = load_config(None)
    plain = Store(tmp_path / "plain.duckdb")
    index_archive(plain, IndexRequest(cohort / "archive", progress=False), Rules())
    uid, folder = plain.query(
        "SELECT s.series_uid, min(i.path) AS path FROM series s JOIN instances i USING "
        "(series_uid) WHERE s.selected AND s.manufacturer LIKE 'GE%' GROUP BY s.series_uid"
    ).iloc[0]
    folder = Path(folder).parent
    archive = tmp_path / "zipped"
    archive.mkdir()
    with zipfile.ZipFile(archive / "export.zip", "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"nested/{path.name}")
    zipped = Store(tmp_path / "zipped.duckdb")
    index_archive(zipped, IndexRequest(archive, progress=False), Rules())
    from_zip = load_indexed_series(zipped, uid, config)
    from_folder = load_indexed_series(plain, uid, config)
    assert from_zip.grid == from_folder.grid
    assert (from_zip.hu == from_folder.hu).all()
    shutil.rmtree(archive)


def test_unknown_series_is_a_clear_error(cohort_db: Store) -> None:
    with pytest.raises(VfriskError) as err:
        load_indexed_series(cohort_db, "1.2.3.4", load_config(None))
    assert err.value.code == "series_not_found" and "vfrisk index" in err.value.message
