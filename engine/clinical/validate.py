"""Pure validation of a clinical table against the data dictionary.

:func:`validate` takes the table as read from the file (CSV cells as text, or Parquet's
own types) and returns every :class:`Problem` it finds: errors refuse the whole file,
warnings are reported and the file is imported. :func:`typed_frame` turns a table without
errors into the typed columns the database stores. Neither touches files or the database.

Rows are numbered as the user sees them, from the frame's index: the reader
(``engine.clinical.importer.read_clinical_file``) sets it to the file row, where a CSV's
header is row 1 and its first patient row 2, as a spreadsheet shows it, and Parquet's
first record is row 1.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

from engine.clinical.dictionary import (
    COLUMN_NAMES,
    COLUMNS,
    FRAX_COLUMNS,
    OPTIONAL,
    ColumnSpec,
    find_identifier_columns,
)

__all__ = ["Problem", "missing_counts", "typed_frame", "validate"]

_EARLIEST_DATE = pd.Timestamp("1900-01-01")
# Where a finding without a row is placed, in a report.
_WHERE = {
    "missing_column": "header",
    "column_absent": "header",
    "identifier_dropped": "header",
    "no_rows": "file",
}


@dataclass(frozen=True)
class Problem:
    """One finding of the validator.

    Parameters
    ----------
    row : int or None
        File row (CSV: header = 1, first patient = 2; Parquet: first record = 1); None
        for a finding about a whole column or the file.
    column : str
        The column concerned ('' for the whole file).
    value : str
        The offending value as text ('' when none).
    rule : str
        Stable rule id: ``missing_column``, ``missing_value``, ``not_a_number``,
        ``not_whole``, ``not_allowed``, ``out_of_range``, ``bad_date``, ``duplicate_id``,
        ``event_inconsistent``, ``frax_scale``, ``no_rows`` (errors); ``column_absent``,
        ``bmi_inconsistent``, ``identifier_dropped`` (warnings).
    message : str
        The rule in words, with what to do.
    severity : str
        ``error`` (the file is refused) or ``warning``.
    """

    row: int | None
    column: str
    value: str
    rule: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else _WHERE.get(self.rule, "all rows")
        parts = [where]
        if self.column:
            parts.append(f"column {self.column}")
        if self.value != "":
            parts.append(f"value {self.value!r}")
        return f"{', '.join(parts)}: [{self.rule}] {self.message}"


# -- parsing ------------------------------------------------------------------------------
def _text(value: Any) -> str:
    """A cell as the user would recognize it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, pd.Timestamp | dt.date):
        return value.isoformat()[:10]
    return str(value).strip()


def _missing(raw: pd.Series) -> np.ndarray:
    """Boolean mask, shape (n,): cells that are empty (NA, None or blank text)."""
    blank = raw.map(lambda v: isinstance(v, str) and not v.strip())
    return (raw.isna() | blank.astype(bool)).to_numpy()


def _numbers(raw: pd.Series) -> pd.Series:
    """Cells as float (NaN where not a finite number)."""
    if is_bool_dtype(raw) or is_numeric_dtype(raw):
        out = raw.astype("float64")
    else:
        stripped = raw.map(lambda v: v.strip() if isinstance(v, str) else v)
        out = pd.to_numeric(stripped, errors="coerce").astype("float64")
    return out.where(np.isfinite(out))


def _dates(raw: pd.Series) -> pd.Series:
    """Cells as midnight timestamps (NaT where not a ``YYYY-MM-DD`` date)."""
    if is_datetime64_any_dtype(raw):
        return pd.to_datetime(raw).dt.tz_localize(None).dt.normalize()

    def iso(v: Any) -> Any:
        if isinstance(v, dt.date):
            return v.isoformat()[:10]
        return v.strip() if isinstance(v, str) else None

    return pd.to_datetime(raw.map(iso), format="%Y-%m-%d", errors="coerce")


def _texts(raw: pd.Series) -> pd.Series:
    return raw.map(_text)


def _frax_factor(frax_scale: str) -> float:
    return 100.0 if frax_scale == "fraction" else 1.0


# -- checks ------------------------------------------------------------------------------
class _Collector:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.rows = [int(r) for r in frame.index]
        self.frame = frame.reset_index(drop=True)
        self.problems: list[Problem] = []

    def add_rows(
        self, mask: np.ndarray, column: str, rule: str, message: str, severity: str = "error"
    ) -> None:
        raw = self.frame.get(column)
        for i in np.flatnonzero(mask):
            value = _text(raw.iloc[i]) if raw is not None else ""
            self.problems.append(Problem(self.rows[i], column, value, rule, message, severity))

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)


def _unit(c: ColumnSpec) -> str:
    return f" {c.unit}" if c.unit and c.unit != "percent" else (" %" if c.unit else "")


def _check_column(
    out: _Collector, c: ColumnSpec, frax_scale: str, skip_range: bool = False
) -> pd.Series | None:
    """Check one present column; return its parsed values (None for text columns)."""
    raw = out.frame[c.name]
    missing = _missing(raw)
    if c.required:
        out.add_rows(missing, c.name, "missing_value",
                     "is required on every row; fill it in or remove the row")  # fmt: skip
    if c.kind in ("id", "text"):
        return None
    if c.kind == "category":
        norm = _texts(raw).str.upper()
        bad = ~missing & ~norm.isin([str(v) for v in c.allowed]).to_numpy()
        out.add_rows(bad, c.name, "not_allowed", f"must be one of {c.range_text} or empty")
        return None
    if c.kind == "date":
        dates = _dates(raw)
        bad = ~missing & dates.isna().to_numpy()
        message = "is not a date; write dates as YYYY-MM-DD (ISO 8601), e.g. 2016-01-09"
        out.add_rows(bad, c.name, "bad_date", message)
        today = pd.Timestamp(dt.date.today())
        late = (dates > today) | (dates < _EARLIEST_DATE)
        out.add_rows(late.to_numpy(), c.name, "out_of_range",
                     "must lie between 1900-01-01 and today")  # fmt: skip
        return dates
    values = _numbers(raw)
    not_number = ~missing & values.isna().to_numpy()
    message = "must be a number (digits with a point as decimal separator, no unit)"
    out.add_rows(not_number, c.name, "not_a_number", message)
    valid = values.notna().to_numpy()
    if c.kind in ("binary", "code"):
        allowed = [0, 1] if c.kind == "binary" else list(c.allowed)
        bad = valid & ~values.isin(allowed).to_numpy()
        out.add_rows(bad, c.name, "not_allowed",
                     f"must be one of {', '.join(map(str, allowed))}"
                     + ("" if c.required else " or empty"))  # fmt: skip
        return values
    if not skip_range:
        lo, hi = c.minimum, c.maximum
        if c.name in FRAX_COLUMNS and frax_scale == "fraction":
            lo, hi = 0.0, 1.0
            rule_text = (
                'must be 0-1 (a fraction: [clinical] frax_scale = "fraction"); values above 1 '
                'look like percent: set frax_scale = "percent"'
            )
        else:
            rule_text = f"must be between {lo:g} and {hi:g}{_unit(c)}"
            if c.name == "followup_years":
                rule_text += "; follow-up cannot be negative, and a large value may be days"
        bad = valid & ((values < lo) | (values > hi)).to_numpy()
        out.add_rows(bad, c.name, "out_of_range", rule_text)
    return values


def _check_frax_scale(out: _Collector, parsed: dict[str, pd.Series], frax_scale: str) -> set[str]:
    """Refuse percent-configured FRAX columns whose values all look like fractions."""
    present = [c for c in FRAX_COLUMNS if c in parsed]
    if frax_scale != "percent" or not present:
        return set()
    values = pd.concat([parsed[c] for c in present]).dropna()
    if values.empty or values.max() > 1.0 or values.min() < 0.0:
        return set()
    for c in present:
        n = int(parsed[c].notna().sum())
        out.add(
            Problem(
                None, c, f"max {parsed[c].max():g}" if n else "", "frax_scale",
                f"all {n} values are between 0 and 1, which looks like fractions, but "
                "[clinical] frax_scale = \"percent\" expects percent (0-100, e.g. 12.5 for "
                "12.5 %); multiply the column by 100, or set frax_scale = \"fraction\" in "
                "the configuration",
            )
        )  # fmt: skip
    return set(present)


def _check_duplicates(out: _Collector) -> None:
    ids = _texts(out.frame["patient_id"])
    filled = ids != ""
    dup = ids.duplicated(keep="first") & filled
    first: dict[str, int] = {}
    for i, key in enumerate(ids):
        first.setdefault(key, out.rows[i])
    for i in np.flatnonzero(dup.to_numpy()):
        out.add(
            Problem(
                out.rows[i], "patient_id", ids.iloc[i], "duplicate_id",
                f"also on row {first[ids.iloc[i]]}; each patient must appear once (merge or "
                "remove the repeated rows)",
            )
        )  # fmt: skip


def _check_events(out: _Collector, parsed: dict[str, pd.Series]) -> None:
    if "incident_vf" not in parsed or "event_type" not in parsed:
        return
    vf, event = parsed["incident_vf"], parsed["event_type"]
    ok = vf.isin([0, 1]) & event.isin([0, 1, 2])
    bad = ok & ((vf == 1) != (event == 1))
    for i in np.flatnonzero(bad.to_numpy()):
        out.add(
            Problem(
                out.rows[i], "event_type", _text(out.frame["event_type"].iloc[i]),
                "event_inconsistent",
                f"with incident_vf {int(vf.iloc[i])}: incident_vf must be 1 exactly when "
                "event_type is 1 (0 censored, 1 vertebral fracture, 2 death before fracture)",
            )
        )  # fmt: skip


def _check_bmi(out: _Collector, parsed: dict[str, pd.Series], tolerance: float) -> None:
    if not {"bmi", "height_cm", "weight_kg"} <= parsed.keys():
        return
    expected = parsed["weight_kg"] / (parsed["height_cm"] / 100.0) ** 2
    off = ((parsed["bmi"] - expected).abs() > tolerance).to_numpy()
    for i in np.flatnonzero(off):
        out.add(
            Problem(
                out.rows[i], "bmi", _text(out.frame["bmi"].iloc[i]),
                "bmi_inconsistent",
                f"differs from weight_kg / (height_cm / 100)^2 = {expected.iloc[i]:.1f} by "
                f"more than {tolerance:g} kg/m2 ([clinical] bmi_tolerance); imported as given",
                "warning",
            )
        )  # fmt: skip


def validate(
    frame: pd.DataFrame,
    *,
    frax_scale: str = "percent",
    bmi_tolerance: float = 1.0,
) -> list[Problem]:
    """Check a clinical table against the data dictionary.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table as read, one row per patient, columns named as in the file, index = the
        file row numbers that reports show. Identifier columns should already be dropped
        (``identifier_dropped`` warnings are the caller's).
    frax_scale : str
        ``percent`` or ``fraction``: the scale expected of ``frax_mof`` and ``frax_hip``.
    bmi_tolerance : float
        kg/m2 beyond which an inconsistent ``bmi`` is a warning.

    Returns
    -------
    list of Problem
        Errors and warnings, ordered by row (whole-column findings first), then by the
        dictionary's column order.
    """
    out = _Collector(frame)
    for c in COLUMNS:
        if c.name not in out.frame:
            if c.required:
                out.add(Problem(None, c.name, "", "missing_column",
                                "required column is not in the file; add it (the header "
                                "must name it exactly)"))  # fmt: skip
            else:
                out.add(Problem(None, c.name, "", "column_absent",
                                "optional column is not in the file; stored as missing for "
                                "every patient", "warning"))  # fmt: skip
    if out.frame.empty:
        out.add(Problem(None, "", "", "no_rows", "the file has no patient rows"))
        return _ordered(out.problems)
    present = [c for c in COLUMNS if c.name in out.frame]
    numbers = {c.name: _numbers(out.frame[c.name]) for c in present if c.name in FRAX_COLUMNS}
    scale_refused = _check_frax_scale(out, numbers, frax_scale)
    parsed: dict[str, pd.Series] = {}
    for c in present:
        values = _check_column(out, c, frax_scale, skip_range=c.name in scale_refused)
        if values is not None:
            parsed[c.name] = values
    if "patient_id" in out.frame:
        _check_duplicates(out)
    _check_events(out, parsed)
    _check_bmi(out, parsed, bmi_tolerance)
    return _ordered(out.problems)


def _ordered(problems: list[Problem]) -> list[Problem]:
    order = {name: i for i, name in enumerate(COLUMN_NAMES)}
    return sorted(
        problems, key=lambda p: (p.row if p.row is not None else -1, order.get(p.column, -1))
    )


# -- typed output ----------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp | dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool | int | float):
        return value
    return str(value)


def typed_frame(frame: pd.DataFrame, *, frax_scale: str = "percent") -> pd.DataFrame:
    """The typed clinical rows of a table that :func:`validate` found without errors.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table as read, index = file row numbers (identifier columns are dropped here
        too).
    frax_scale : str
        Scale of the FRAX columns in ``frame``; the output is always percent.

    Returns
    -------
    pandas.DataFrame
        One row per patient: every dictionary column (absent optional ones all missing;
        floats as float64 with NaN, 0/1 and codes as nullable Int8, ``sex`` upper case,
        ``scan_date`` as ``datetime.date`` or None), ``extra`` (JSON text of the columns
        not in the dictionary, or None) and ``source_row`` (file row).
    """
    source_rows = frame.index.to_numpy(dtype=np.int64)
    frame = frame.reset_index(drop=True)
    frame = frame.drop(columns=find_identifier_columns(frame.columns))
    n = len(frame)
    out: dict[str, Any] = {}
    for c in COLUMNS:
        raw = frame[c.name] if c.name in frame else pd.Series([None] * n, dtype=object)
        if c.kind in ("id", "text", "category"):
            texts = _texts(raw)
            if c.kind == "category":
                texts = texts.str.upper()
            out[c.name] = texts.where(texts != "", None).astype(object)
        elif c.kind == "date":
            dates = _dates(raw)
            out[c.name] = [d.date() if pd.notna(d) else None for d in dates]
        elif c.kind in ("binary", "code"):
            out[c.name] = _numbers(raw).round().astype("Int8")
        else:
            values = _numbers(raw)
            if c.name in FRAX_COLUMNS:
                values = (values * _frax_factor(frax_scale)).round(6)
            out[c.name] = values
    extra_cols = [c for c in frame.columns if c not in COLUMN_NAMES]
    if extra_cols:
        records = frame[extra_cols].to_dict(orient="records")
        out["extra"] = [
            json.dumps({k: _jsonable(v) for k, v in r.items()}, sort_keys=True) for r in records
        ]
    else:
        out["extra"] = [None] * n
    out["source_row"] = source_rows
    return pd.DataFrame(out)


def missing_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Empty cells per optional column (an absent column counts every row)."""
    return {
        name: int(_missing(frame[name]).sum()) if name in frame else len(frame) for name in OPTIONAL
    }
