"""The data dictionary as code agrees with the generator, the docs and the database."""

from __future__ import annotations

from pathlib import Path

from engine.clinical.dictionary import (
    COLUMN_NAMES,
    OPTIONAL,
    REQUIRED,
    find_identifier_columns,
    markdown_table,
)
from engine.store import Store
from engine.synth.population import CLINICAL_COLUMNS

ROOT = Path(__file__).resolve().parents[3]


def test_dictionary_covers_exactly_the_generated_columns() -> None:
    assert COLUMN_NAMES == CLINICAL_COLUMNS
    assert set(REQUIRED) == {"patient_id", "site", "followup_years", "incident_vf", "event_type"}
    assert set(REQUIRED) | set(OPTIONAL) == set(COLUMN_NAMES)


def test_docs_table_is_the_generated_table() -> None:
    text = (ROOT / "sample_data" / "DATA_DICTIONARY.md").read_text()
    begin = text.index("<!-- clinical-dictionary:begin")
    begin = text.index("\n", begin) + 1
    end = text.index("<!-- clinical-dictionary:end -->")
    assert text[begin:end].strip() == markdown_table(), (
        "regenerate the table in sample_data/DATA_DICTIONARY.md from "
        "engine.clinical.dictionary.markdown_table()"
    )


def test_clinical_table_has_a_column_per_dictionary_entry(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb")
    with store.write():
        pass
    columns = store.query("DESCRIBE clinical").column_name.tolist()
    assert columns[: len(COLUMN_NAMES)] == list(COLUMN_NAMES)
    assert columns[len(COLUMN_NAMES) :] == [
        "extra", "source_file", "source_row", "imported_at", "run_id"
    ]  # fmt: skip


def test_identifier_columns_are_recognized_by_name() -> None:
    found = find_identifier_columns(
        ["patient_id", "Name", "birth_date", "DOB", "Address", "MRN", "e-mail", "bmi", "ward"]
    )
    assert found == ["Name", "birth_date", "DOB", "Address", "MRN", "e-mail"]
