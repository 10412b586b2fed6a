"""Pure validation: each kind of defect gives the right row, column, value and rule."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from engine.clinical.validate import Problem, missing_counts, typed_frame, validate


def _as_read(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as the CSV reader hands it over: index = file row (header = row 1)."""
    out = frame.copy()
    out.index = pd.RangeIndex(2, len(out) + 2)
    return out


def _errors(frame: pd.DataFrame, **kw: object) -> list[Problem]:
    return [p for p in validate(_as_read(frame), **kw) if p.severity == "error"]  # type: ignore[arg-type]


def test_generated_table_is_valid_without_warnings(clinical: pd.DataFrame) -> None:
    assert validate(_as_read(clinical)) == []


def _set(column: str, i: int, value: str) -> Callable[[pd.DataFrame], None]:
    def edit(df: pd.DataFrame) -> None:
        df.loc[i, column] = value

    return edit


def _duplicate(df: pd.DataFrame) -> None:
    df.loc[3, "patient_id"] = df.loc[1, "patient_id"]


def _inconsistent(df: pd.DataFrame) -> None:
    i = int(np.flatnonzero(df["incident_vf"] == "0")[0])
    df.loc[i, "event_type"] = "1"


# (edit, expected (row, column, value, rule)); row = file row, header = 1.
DEFECTS = {
    "text_in_number": (_set("age", 2, "seventy"), (4, "age", "seventy", "not_a_number")),
    "decimal_comma": (_set("weight_kg", 1, "70,5"), (3, "weight_kg", "70,5", "not_a_number")),
    "negative_followup": (
        _set("followup_years", 0, "-0.5"), (2, "followup_years", "-0.5", "out_of_range")
    ),
    "unparseable_date": (
        _set("scan_date", 4, "2016-13-45"), (6, "scan_date", "2016-13-45", "bad_date")
    ),
    "european_date": (
        _set("scan_date", 0, "09.01.2016"), (2, "scan_date", "09.01.2016", "bad_date")
    ),
    "event_outside_0_1": (_set("incident_vf", 5, "2"), (7, "incident_vf", "2", "not_allowed")),
    "event_type_outside": (_set("event_type", 2, "3"), (4, "event_type", "3", "not_allowed")),
    "missing_required": (_set("site", 1, ""), (3, "site", "", "missing_value")),
    "bad_sex": (_set("sex", 0, "X"), (2, "sex", "X", "not_allowed")),
    "age_out_of_range": (_set("age", 3, "7"), (5, "age", "7", "out_of_range")),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_each_defect_names_row_column_value_and_rule(clinical: pd.DataFrame, name: str) -> None:
    edit, expected = DEFECTS[name]
    edit(clinical)
    errors = _errors(clinical)
    assert [(p.row, p.column, p.value, p.rule) for p in errors] == [expected]
    assert f"row {expected[0]}" in str(errors[0]) and expected[1] in str(errors[0])


def test_duplicate_id_points_to_the_first_row(clinical: pd.DataFrame) -> None:
    _duplicate(clinical)
    (error,) = _errors(clinical)
    assert (error.row, error.column, error.value, error.rule) == (
        5, "patient_id", clinical.loc[1, "patient_id"], "duplicate_id"
    )  # fmt: skip
    assert "also on row 3" in error.message


def test_event_type_inconsistent_with_incident_vf(clinical: pd.DataFrame) -> None:
    _inconsistent(clinical)
    (error,) = _errors(clinical)
    assert (error.column, error.value, error.rule) == ("event_type", "1", "event_inconsistent")
    assert "incident_vf 0" in error.message


def test_missing_required_column(clinical: pd.DataFrame) -> None:
    (error,) = _errors(clinical.drop(columns=["followup_years"]))
    assert (error.row, error.column, error.rule) == (None, "followup_years", "missing_column")
    assert str(error).startswith("header, column followup_years")


def test_absent_optional_column_is_a_warning(clinical: pd.DataFrame) -> None:
    (warning,) = validate(_as_read(clinical.drop(columns=["frax_hip"])))
    assert (warning.severity, warning.column, warning.rule) == (
        "warning",
        "frax_hip",
        "column_absent",
    )


def test_fractions_refused_when_percent_is_configured(clinical: pd.DataFrame) -> None:
    for column in ("frax_mof", "frax_hip"):
        clinical[column] = (clinical[column].astype(float) / 100).round(4).astype(str)
    errors = _errors(clinical, frax_scale="percent")
    assert [(p.row, p.column, p.rule) for p in errors] == [
        (None, "frax_mof", "frax_scale"), (None, "frax_hip", "frax_scale")
    ]  # fmt: skip
    assert 'frax_scale = "fraction"' in errors[0].message and "multiply" in errors[0].message
    assert _errors(clinical, frax_scale="fraction") == []
    typed = typed_frame(_as_read(clinical), frax_scale="fraction")
    expected = pd.read_csv(pd.io.common.StringIO(clinical.to_csv(index=False)))["frax_mof"] * 100
    np.testing.assert_allclose(typed["frax_mof"], expected, atol=1e-6)


def test_percent_refused_when_fraction_is_configured(clinical: pd.DataFrame) -> None:
    errors = _errors(clinical, frax_scale="fraction")
    assert errors and {p.rule for p in errors} == {"out_of_range"}
    assert {p.column for p in errors} == {"frax_mof", "frax_hip"}
    assert 'set frax_scale = "percent"' in errors[0].message


def test_bmi_inconsistency_is_a_warning(clinical: pd.DataFrame) -> None:
    clinical.loc[2, "bmi"] = "45.0"
    (warning,) = validate(_as_read(clinical))
    assert (warning.row, warning.column, warning.rule, warning.severity) == (
        4, "bmi", "bmi_inconsistent", "warning"
    )  # fmt: skip


def test_optional_values_may_be_missing(clinical: pd.DataFrame) -> None:
    clinical.loc[0, ["age", "frax_mof", "scan_date", "sex"]] = ""
    clinical.loc[1, "frax_mof"] = "NA"
    frame = _as_read(clinical.replace({"NA": None}))
    assert validate(frame) == []
    assert missing_counts(frame)["frax_mof"] == 2 and missing_counts(frame)["age"] == 1


def test_empty_file_is_refused(clinical: pd.DataFrame) -> None:
    (error,) = _errors(clinical.iloc[:0])
    assert error.rule == "no_rows"


def test_typed_frame_types_and_extra(clinical: pd.DataFrame) -> None:
    clinical["ward"] = ["A", "B", "", "C", "D", "E"]
    typed = typed_frame(_as_read(clinical))
    assert typed["event_type"].dtype == "Int8" and typed["age"].dtype == "float64"
    assert typed["source_row"].tolist() == [2, 3, 4, 5, 6, 7]
    assert json.loads(typed["extra"][0]) == {"ward": "A"}
    assert json.loads(typed["extra"][2]) == {"ward": None}
    assert str(typed["scan_date"][0]) == clinical.loc[0, "scan_date"]
