"""``vfrisk import-clinical``: read, validate, store and link a clinical table.

Steps: read the file (CSV or Parquet, told apart by content) -> drop direct identifier
columns with a warning -> validate against the data dictionary -> refuse the whole file
on any error (a report naming row, column, value and rule; nothing is written) -> in ONE
write transaction, upsert the rows by ``patient_id`` (``replace`` also deletes patients
absent from the file) and recompute ``clinical_links`` from the whole clinical table and
the selected series -> record the run in ``runs``.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from engine import logs
from engine.clinical.dictionary import COLUMN_NAMES, find_identifier_columns
from engine.clinical.link import LinkCounts, link_counts, link_patients
from engine.clinical.settings import ClinicalSettings
from engine.clinical.validate import Problem, missing_counts, typed_frame, validate
from engine.errors import VfriskError
from engine.store import Store
from engine.store import clinical_tables as tables

__all__ = [
    "ClinicalFileError",
    "ImportRequest",
    "ImportSummary",
    "format_report",
    "import_clinical",
    "read_clinical_file",
    "relink",
]

_NA_VALUES = ["", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None"]


class ClinicalFileError(VfriskError):
    """The clinical file breaks the data dictionary; ``problems`` lists every finding."""

    def __init__(self, message: str, problems: tuple[Problem, ...]) -> None:
        super().__init__("clinical_invalid", message)
        self.problems = problems


@dataclass(frozen=True)
class ImportRequest:
    """One ``vfrisk import-clinical`` call.

    Parameters
    ----------
    file : Path
        CSV (comma or semicolon separated, UTF-8) or Parquet file, one row per patient.
    replace : bool
        Delete stored patients absent from ``file`` (default: keep them).
    """

    file: Path
    replace: bool = False


@dataclass(frozen=True)
class ImportSummary:
    """What an import did and how the clinical table links to the scans afterwards."""

    file: str
    db: str
    seconds: float
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    removed: int
    kept: int
    clinical_rows: int
    links: LinkCounts
    tolerance_days: int
    index_scan: str
    frax_scale: str
    dropped_identifiers: tuple[str, ...] = ()
    extra_columns: tuple[str, ...] = ()
    missing: dict[str, int] = field(default_factory=dict)
    warnings: tuple[Problem, ...] = ()

    def counts(self) -> dict[str, Any]:
        """Counts for the ``runs`` row and the JSON log (no warnings' details)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("file", "db", "warnings")}
        out["links"] = {k: v for k, v in out["links"].items() if k != "examples"}
        out["warnings"] = len(self.warnings)
        return out


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"


def _read_csv(path: Path) -> pd.DataFrame:
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    sep = ";" if header.count(";") > header.count(",") else ","
    frame = pd.read_csv(
        path,
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_values=_NA_VALUES,
        encoding="utf-8-sig",
        skip_blank_lines=False,
    )
    frame.index = pd.RangeIndex(2, len(frame) + 2)  # header = row 1, as a spreadsheet shows
    return frame.dropna(how="all")


def read_clinical_file(path: Path) -> pd.DataFrame:
    """Read a clinical CSV or Parquet file; the index holds the file row numbers.

    CSV cells are read as text (validation parses them, so a report can quote the value
    as written); blank lines are skipped but keep their numbers. Column names are
    stripped, and matched to the dictionary case-insensitively.

    Raises
    ------
    VfriskError
        ``clinical_file_not_found`` or ``clinical_unreadable``.
    """
    path = Path(path)
    if not path.is_file():
        raise VfriskError(
            "clinical_file_not_found",
            f"clinical file {path} does not exist or is not a file; pass the CSV or Parquet "
            "file of the clinical table",
        )
    try:
        if _is_parquet(path):
            frame = pd.read_parquet(path)
            frame.index = pd.RangeIndex(1, len(frame) + 1)
        else:
            frame = _read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise VfriskError(
            "clinical_unreadable",
            f"{path} cannot be read as a CSV (UTF-8, comma or semicolon separated, one "
            f"header row) or Parquet file: {str(exc).strip().splitlines()[0]}",
        ) from None
    lower = {name.lower(): name for name in COLUMN_NAMES}
    frame.columns = [lower.get(str(c).strip().lower(), str(c).strip()) for c in frame.columns]
    return frame


def format_report(path: Path, problems: list[Problem], max_problems: int) -> str:
    """The refusal report: the first ``max_problems`` errors and the total."""
    errors = [p for p in problems if p.severity == "error"]
    lines = [
        f"{path}: {len(errors)} problem{'s' * (len(errors) != 1)} against the clinical data "
        "dictionary (sample_data/DATA_DICTIONARY.md, 'Clinical data'); nothing was written. "
        "Fix the file and run again. Rows count the header as row 1."
    ]
    lines += [f"  {p}" for p in errors[:max_problems]]
    if len(errors) > max_problems:
        lines.append(f"  ... and {len(errors) - max_problems} more (total {len(errors)})")
    return "\n".join(lines)


def _identifier_warnings(columns: list[str]) -> list[Problem]:
    return [
        Problem(
            None, name, "", "identifier_dropped",
            "looks like a direct identifier: dropped, never stored (patient_id, the DICOM "
            "PatientID, is the only patient key kept)", "warning",
        )
        for name in columns
    ]  # fmt: skip


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def import_clinical(
    store: Store,
    req: ImportRequest,
    settings: ClinicalSettings,
    *,
    config_hash: str = "",
    run_id: str | None = None,
) -> ImportSummary:
    """Validate ``req.file``, upsert it into ``clinical`` and relink it to the scans.

    Parameters
    ----------
    store : Store
        The database; it must exist (made by ``vfrisk index``) so there is something to
        link to.
    req : ImportRequest
        The file and whether to replace patients absent from it.
    settings : ClinicalSettings
        ``[clinical]``: FRAX scale, index scan rule, date tolerance, report length.
    config_hash, run_id : str
        Provenance for ``runs`` (run id default: the log's, else a new one).

    Raises
    ------
    ClinicalFileError
        Any validation error; the database is not touched.
    VfriskError
        ``clinical_file_not_found``, ``clinical_unreadable``, ``db_not_found``.
    """
    start = time.perf_counter()
    raw = read_clinical_file(req.file)
    if not store.path.exists():
        raise VfriskError(
            "db_not_found",
            f"database {store.path} does not exist; index the scans first (`vfrisk index "
            "ARCHIVE --db DB`) so the clinical rows have scans to link to, or pass the right "
            "--db",
        )
    identifiers = find_identifier_columns(raw.columns)
    raw = raw.drop(columns=identifiers)
    problems = _identifier_warnings(identifiers) + validate(
        raw, frax_scale=settings.frax_scale, bmi_tolerance=settings.bmi_tolerance
    )
    if any(p.severity == "error" for p in problems):
        errors = tuple(p for p in problems if p.severity == "error")
        logs.event("clinical.refused", level="warning", file=str(req.file), errors=len(errors))
        raise ClinicalFileError(format_report(req.file, problems, settings.max_problems), errors)
    rows = typed_frame(raw, frax_scale=settings.frax_scale)
    run_id = run_id or uuid.uuid4().hex[:12]  # each run its own row in `runs`
    store.start_run(run_id, "import-clinical", config_hash)
    try:
        now = _now()
        with store.write() as con:
            upsert = tables.upsert_clinical(
                con, rows, source_file=str(Path(req.file).absolute()), imported_at=now,
                run_id=run_id, replace=req.replace,
            )  # fmt: skip
            links = link_patients(
                tables.clinical_dates(con),
                tables.selected_scans(con),
                index_scan=settings.index_scan,
                tolerance_days=settings.scan_date_tolerance_days,
            )
            tables.replace_links(con, links, linked_at=now, run_id=run_id)
            total = tables.count_clinical(con)
    except BaseException as exc:
        store.finish_run(run_id, "failed", {"error": str(exc)[:500]})
        raise
    summary = ImportSummary(
        file=str(req.file), db=str(store.path), seconds=time.perf_counter() - start,
        rows_read=len(raw), inserted=upsert.inserted, updated=upsert.updated,
        unchanged=upsert.unchanged, removed=upsert.removed, kept=upsert.kept,
        clinical_rows=total, links=link_counts(links),
        tolerance_days=settings.scan_date_tolerance_days, index_scan=settings.index_scan,
        frax_scale=settings.frax_scale, dropped_identifiers=tuple(identifiers),
        extra_columns=tuple(c for c in raw.columns if c not in COLUMN_NAMES),
        missing=missing_counts(raw), warnings=tuple(problems),
    )  # fmt: skip
    store.finish_run(run_id, "ok", summary.counts())
    for problem in problems[:100]:
        logs.event("clinical.warning", level="warning", **asdict(problem))
    logs.event("clinical.imported", **summary.counts())
    return summary


def relink(store: Store, settings: ClinicalSettings, run_id: str) -> LinkCounts | None:
    """Recompute ``clinical_links`` after the scans changed (``vfrisk index`` calls it).

    Returns None, and writes nothing, when no clinical table has been imported yet.
    """
    with store.write() as con:
        if tables.count_clinical(con) == 0:
            return None
        links = link_patients(
            tables.clinical_dates(con),
            tables.selected_scans(con),
            index_scan=settings.index_scan,
            tolerance_days=settings.scan_date_tolerance_days,
        )
        tables.replace_links(con, links, linked_at=_now(), run_id=run_id)
    return link_counts(links)
