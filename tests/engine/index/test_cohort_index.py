"""Index a generated multi-site cohort and check it against ``truth/series.csv``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.store import Store

KIND_CODE = {
    "localizer": "localizer",
    "secondary_capture": "secondary_capture",
    "sr": "no_image",
    "reformat": "derived",
}


def _series(store: Store) -> pd.DataFrame:
    return store.query("SELECT * FROM series").set_index("series_uid")


def test_every_truth_series_is_indexed_with_its_files(cohort: Path, cohort_db: Store) -> None:
    truth = pd.read_csv(cohort / "truth" / "series.csv").set_index("series_uid")
    series = _series(cohort_db)
    assert set(truth.index) == set(series.index)
    assert (series.loc[truth.index, "n_instances"] == truth["n_files"]).all()
    n_files = cohort_db.query("SELECT count(*) AS n FROM instances").n[0]
    assert n_files == truth["n_files"].sum()
    assert cohort_db.query("SELECT count(*) AS n FROM unreadable").n[0] == 0


def test_one_soft_axial_series_selected_per_study(cohort: Path, cohort_db: Store) -> None:
    truth = pd.read_csv(cohort / "truth" / "series.csv").set_index("series_uid")
    series = _series(cohort_db)
    selected = series[series.selected]
    assert selected.study_uid.is_unique
    assert set(selected.study_uid) == set(truth.study_uid)
    chosen = truth.loc[selected.index]
    assert (chosen.kind == "axial").all()
    assert set(chosen.description.str.contains("SOFT")) == {True}
    assert (selected.kernel_class == "soft").all()
    assert selected.reason_code.isna().all() and selected.reason.isna().all()
    assert series[~series.selected].reason_code.notna().all()
    assert series[~series.selected].reason.notna().all()


def test_excluded_series_get_specific_reason_codes(cohort: Path, cohort_db: Store) -> None:
    truth = pd.read_csv(cohort / "truth" / "series.csv").set_index("series_uid")
    series = _series(cohort_db).loc[truth.index]
    assert set(truth.kind) >= {"localizer", "secondary_capture", "sr", "reformat", "axial"}
    for kind, code in KIND_CODE.items():
        assert (series[truth.kind == kind].reason_code == code).all(), kind
    bone = truth.description.str.contains("BONE")
    assert bone.any()
    assert (series[bone].reason_code == "not_preferred").all()
    assert (series[bone].eligible).all()
    assert (series[bone].kernel_class == "sharp").all()
    assert series[bone].reason.str.contains("soft-tissue kernel is preferred").all()


def test_series_geometry_matches_truth(cohort: Path, cohort_db: Store) -> None:
    truth = pd.read_csv(cohort / "truth" / "series.csv").set_index("series_uid")
    axial = truth[truth.kind == "axial"]
    series = _series(cohort_db).loc[axial.index]
    assert (series.n_slices == axial.n_files).all()
    assert (series.orientation == "axial").all()
    thickness = axial.description.str.extract(r"([\d.]+)mm")[0].astype(float)
    assert (series.slice_thickness - thickness).abs().max() < 1e-6
    assert ((series.n_slices - 1) * series.slice_spacing_mm - series.z_extent_mm).abs().max() < 1e-3


def test_no_direct_identifiers_anywhere_in_the_database(cohort_db: Store) -> None:
    columns = cohort_db.query(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal"
    )
    assert {"series", "instances", "unreadable", "files", "runs"} <= set(columns.table_name)
    lowered = columns.column_name.str.lower()
    # patient names, birth dates and contact details; `models.name` is a model's name
    assert not lowered.str.contains("patient_?name|birth|address|phone").any(), sorted(lowered)
    named = columns[lowered == "name"].table_name
    assert set(named) <= {"models"}, sorted(named)
    for table in ("instances", "series", "unreadable", "files"):
        text = cohort_db.query(f"SELECT * FROM {table}").to_string()
        assert "SYNTHETIC^" not in text  # the generator's PatientName


def test_instances_are_ordered_by_position_for_the_loader(cohort_db: Store) -> None:
    rows = cohort_db.query(
        "SELECT i.path, i.position, i.frames FROM instances i JOIN series s USING (series_uid) "
        "WHERE s.selected ORDER BY i.series_uid, i.position"
    )
    assert rows.position.notna().all()
    assert (rows.frames == 1).all()
    assert all(Path(p).is_file() for p in rows.path)
