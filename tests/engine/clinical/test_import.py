"""``import_clinical`` against a generated, indexed cohort: storage, upsert, links."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.clinical import ClinicalFileError, ClinicalSettings, ImportRequest, import_clinical
from engine.errors import VfriskError
from engine.store import Store
from engine.summaries import describe_clinical

Snapshot = Callable[[Path], dict[str, pd.DataFrame]]


def _import(db: Path, file: Path, **kw: object):  # noqa: ANN202 - ImportSummary
    replace = bool(kw.pop("replace", False))
    return import_clinical(Store(db), ImportRequest(file, replace=replace), ClinicalSettings(**kw))  # type: ignore[arg-type]


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_generated_cohort_imports_fully_linked(cohort: Path, db: Path) -> None:
    summary = _import(db, cohort / "clinical.csv")
    assert (summary.rows_read, summary.inserted, summary.updated, summary.unchanged) == (6, 6, 0, 0)
    links = summary.links
    assert (links.linked, links.no_scan, links.scans_without_patient) == (6, 0, 0)
    assert links.date_disagreements == 0 and summary.clinical_rows == 6
    assert summary.missing == dict.fromkeys(summary.missing, 0)
    store = Store(db)
    stored = store.query("SELECT * FROM clinical ORDER BY patient_id")
    truth = pd.read_csv(cohort / "clinical.csv").sort_values("patient_id", ignore_index=True)
    np.testing.assert_allclose(stored.frax_mof, truth.frax_mof)  # percent, as written
    assert stored.event_type.tolist() == truth.event_type.tolist()
    table = store.query(
        "SELECT l.*, s.patient_id AS dicom_id FROM clinical_links l "
        "JOIN series s USING (series_uid) WHERE s.selected"
    )
    assert len(table) == 6 and (table.patient_id == table.dicom_id).all()
    assert (table.status == "linked").all() and (table.date_gap_days == 0).all()
    runs = store.query("SELECT status, counts FROM runs WHERE command = 'import-clinical'")
    assert runs.status.tolist() == ["ok"] and json.loads(runs.counts[0])["inserted"] == 6
    text = describe_clinical(summary)
    assert "6 read: 6 inserted, 0 updated, 0 unchanged" in text
    assert "linked       6 patients" in text and "no scan      0" in text


def _first_where(df: pd.DataFrame, column: str, value: str) -> int:
    return int(np.flatnonzero(df[column] == value)[0])


def _edit(name: str, df: pd.DataFrame) -> tuple[pd.DataFrame, tuple[object, ...]]:
    """Apply one defect; return the frame and the expected (row, column, value, rule)."""
    if name == "missing_column":
        return df.drop(columns=["event_type"]), (None, "event_type", "", "missing_column")
    if name == "text_in_number":
        df.loc[1, "height_cm"] = "tall"
        return df, (3, "height_cm", "tall", "not_a_number")
    if name == "negative_followup":
        df.loc[4, "followup_years"] = "-2"
        return df, (6, "followup_years", "-2", "out_of_range")
    if name == "duplicate_id":
        df.loc[5, "patient_id"] = df.loc[0, "patient_id"]
        return df, (7, "patient_id", df.loc[0, "patient_id"], "duplicate_id")
    if name == "unparseable_date":
        df.loc[2, "scan_date"] = "yesterday"
        return df, (4, "scan_date", "yesterday", "bad_date")
    if name == "fraction_frax":
        df["frax_mof"] = (df.frax_mof.astype(float) / 100).astype(str)
        df["frax_hip"] = (df.frax_hip.astype(float) / 100).astype(str)
        return df, (None, "frax_mof", None, "frax_scale")
    if name == "event_outside_0_1":
        df.loc[3, "incident_vf"] = "-1"
        return df, (5, "incident_vf", "-1", "not_allowed")
    assert name == "event_type_inconsistent"
    i = _first_where(df, "event_type", "0")
    df.loc[i, "incident_vf"] = "1"
    return df, (i + 2, "event_type", "0", "event_inconsistent")


@pytest.mark.parametrize(
    "defect",
    [
        "missing_column", "text_in_number", "negative_followup", "duplicate_id",
        "unparseable_date", "fraction_frax", "event_outside_0_1", "event_type_inconsistent",
    ],
)  # fmt: skip
def test_defective_file_is_refused_and_nothing_is_written(
    cohort: Path, db: Path, clinical: pd.DataFrame, tmp_path: Path, snapshot: Snapshot, defect: str
) -> None:
    _import(db, cohort / "clinical.csv")
    before = snapshot(db)
    # also change a valid value, so a partial write would show
    clinical.loc[0, "age"] = "55.5"
    frame, (row, column, value, rule) = _edit(defect, clinical)
    with pytest.raises(ClinicalFileError) as caught:
        _import(db, _write(frame, tmp_path / "bad.csv"))
    first = caught.value.problems[0]
    assert (first.row, first.column, first.rule) == (row, column, rule)
    if value is not None:
        assert first.value == value
    assert caught.value.code == "clinical_invalid"
    assert "nothing was written" in caught.value.message and str(first) in caught.value.message
    after = snapshot(db)
    for table, rows in before.items():
        pd.testing.assert_frame_equal(rows, after[table], obj=table)


def test_report_prints_up_to_n_problems_and_the_total(
    db: Path, clinical: pd.DataFrame, tmp_path: Path
) -> None:
    clinical["age"] = "old"
    with pytest.raises(ClinicalFileError) as caught:
        _import(db, _write(clinical, tmp_path / "bad.csv"), max_problems=2)
    lines = caught.value.message.splitlines()
    assert len(lines) == 4 and lines[-1] == "  ... and 4 more (total 6)"
    assert lines[1] == (
        "  row 2, column age, value 'old': [not_a_number] must be a number (digits with a "
        "point as decimal separator, no unit)"
    )


def test_parquet_input_matches_csv(cohort: Path, db: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(cohort / "clinical.csv", parse_dates=["scan_date"])
    frame.to_parquet(tmp_path / "clinical.parquet", index=False)
    summary = _import(db, tmp_path / "clinical.parquet")
    assert summary.inserted == 6 and summary.links.linked == 6
    again = _import(db, cohort / "clinical.csv")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)  # same values
    frame.loc[2, "followup_years"] = -1.0
    frame.to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(ClinicalFileError) as caught:
        _import(db, tmp_path / "bad.parquet")
    (problem,) = caught.value.problems
    assert (problem.row, problem.column, problem.value) == (3, "followup_years", "-1")  # record 3


def test_reimport_of_corrected_file_updates_by_patient_id(
    cohort: Path, db: Path, clinical: pd.DataFrame, tmp_path: Path
) -> None:
    wrong = clinical.copy()
    wrong.loc[0, "age"] = "60.0"
    _import(db, _write(wrong.iloc[:5], tmp_path / "first.csv"))
    store = Store(db)
    stamps = store.query("SELECT patient_id, imported_at FROM clinical ORDER BY 1")
    summary = _import(db, cohort / "clinical.csv")
    assert (summary.inserted, summary.updated, summary.unchanged, summary.kept) == (1, 1, 4, 0)
    stored = store.query("SELECT patient_id, age, imported_at FROM clinical ORDER BY 1")
    pid = clinical.loc[0, "patient_id"]
    assert stored.set_index("patient_id").age[pid] == float(clinical.loc[0, "age"])
    same = stored.merge(stamps, on="patient_id", suffixes=("", "_before"))
    changed = same.imported_at != same.imported_at_before
    assert same.patient_id[changed].tolist() == [pid]  # unchanged rows keep their stamp
    subset = _write(clinical.iloc[2:], tmp_path / "subset.csv")
    kept = _import(db, subset)
    assert (kept.unchanged, kept.kept, kept.clinical_rows) == (4, 2, 6)
    replaced = _import(db, subset, replace=True)
    assert (replaced.removed, replaced.clinical_rows, replaced.links.scans_without_patient) == (
        2, 4, 2
    )  # fmt: skip
    assert "2 stored patients not in the file removed (--replace)" in describe_clinical(replaced)


def test_patient_without_scan_and_scan_without_patient_are_counted(
    db: Path, clinical: pd.DataFrame, tmp_path: Path
) -> None:
    orphan_scan_patient = clinical.loc[3, "patient_id"]
    clinical.loc[3, "patient_id"] = "NOSCAN01"
    summary = _import(db, _write(clinical, tmp_path / "c.csv"))
    links = summary.links
    assert (links.linked, links.no_scan, links.scans_without_patient) == (5, 1, 1)
    table = Store(db).query("SELECT patient_id, status, series_uid FROM clinical_links")
    by_id = table.set_index("patient_id")
    assert by_id.status["NOSCAN01"] == "no_scan" and by_id.series_uid["NOSCAN01"] is None
    assert by_id.status[orphan_scan_patient] == "no_clinical"
    text = describe_clinical(summary)
    assert "no scan      1 patients without a selected scan" in text
    assert "no patient   1 selected scans (1 PatientIDs) without a clinical row" in text


def test_scan_date_disagreement_is_a_warning_with_examples(
    db: Path, clinical: pd.DataFrame, tmp_path: Path
) -> None:
    moved = pd.Timestamp(clinical.loc[1, "scan_date"]) + pd.Timedelta(days=45)
    clinical.loc[1, "scan_date"] = moved.date().isoformat()
    path = _write(clinical, tmp_path / "c.csv")
    summary = _import(db, path)
    assert summary.inserted == 6 and summary.links.date_disagreements == 1
    ((pid, scan_date, study_date, gap),) = summary.links.examples
    assert pid == clinical.loc[1, "patient_id"] and gap == 45 and scan_date == moved.date()
    text = describe_clinical(summary)
    assert "scan dates   1 patients whose scan_date is more than 30 days" in text
    assert f"e.g. {pid}: scan_date {moved.date()}, StudyDate {study_date} (+45 days)" in text
    assert _import(db, path, scan_date_tolerance_days=60).links.date_disagreements == 0


def test_identifier_columns_are_dropped_and_extra_columns_kept(
    db: Path, clinical: pd.DataFrame, tmp_path: Path
) -> None:
    clinical["Patient Name"] = "DOE^JANE"
    clinical["birth_date"] = "1941-02-03"
    clinical["MRN"] = "H123456"
    clinical["ward"] = "W7"
    summary = _import(db, _write(clinical, tmp_path / "c.csv"))
    assert summary.dropped_identifiers == ("Patient Name", "birth_date", "MRN")
    assert summary.extra_columns == ("ward",)
    assert {w.rule for w in summary.warnings} == {"identifier_dropped"}
    dump = Store(db).query("SELECT * FROM clinical").to_csv()
    assert "DOE" not in dump and "1941" not in dump and "H123456" not in dump
    extra = Store(db).query("SELECT extra FROM clinical").extra
    assert {json.loads(e)["ward"] for e in extra} == {"W7"}
    assert "dropped      Patient Name, birth_date, MRN" in describe_clinical(summary)


def test_semicolon_csv_with_blank_line_keeps_row_numbers(
    db: Path, clinical: pd.DataFrame, tmp_path: Path
) -> None:
    clinical.loc[2, "age"] = "x"
    lines = clinical.to_csv(index=False, sep=";").splitlines()
    path = tmp_path / "c.csv"
    path.write_text("\n".join([*lines[:2], "", *lines[2:]]) + "\n")  # blank line = row 3
    with pytest.raises(ClinicalFileError) as caught:
        _import(db, path)
    assert [(p.row, p.column) for p in caught.value.problems] == [(5, "age")]


def test_missing_inputs_are_clear_errors(cohort: Path, db: Path, tmp_path: Path) -> None:
    with pytest.raises(VfriskError) as caught:
        _import(db, tmp_path / "nope.csv")
    assert caught.value.code == "clinical_file_not_found" and "nope.csv" in caught.value.message
    with pytest.raises(VfriskError) as caught:
        _import(tmp_path / "new.duckdb", cohort / "clinical.csv")
    assert caught.value.code == "db_not_found" and not (tmp_path / "new.duckdb").exists()
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(VfriskError) as caught:
        _import(db, tmp_path / "broken.parquet")
    assert caught.value.code == "clinical_unreadable"
