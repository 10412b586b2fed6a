"""SQL for the clinical tables (``clinical``, ``clinical_links``).

``engine.clinical.importer`` calls these with a connection from ``Store.write()`` (one
transaction for the whole import) or ``Store.read()``; it never writes SQL itself. Rows
travel as Arrow tables with explicit types.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pandas as pd
import pyarrow as pa

__all__ = [
    "UpsertCounts",
    "clinical_dates",
    "count_clinical",
    "replace_links",
    "selected_scans",
    "upsert_clinical",
]

_I8 = pa.int8()
_CLINICAL_SCHEMA = pa.schema(
    [
        ("patient_id", pa.string()), ("site", pa.string()), ("sex", pa.string()),
        ("age", pa.float64()), ("height_cm", pa.float64()), ("weight_kg", pa.float64()),
        ("bmi", pa.float64()), ("prior_fracture", _I8), ("parent_hip_fracture", _I8),
        ("current_smoking", _I8), ("glucocorticoids", _I8), ("rheumatoid_arthritis", _I8),
        ("secondary_osteoporosis", _I8), ("alcohol_3plus", _I8), ("prevalent_vf", _I8),
        ("frax_mof", pa.float64()), ("frax_hip", pa.float64()), ("scan_date", pa.date32()),
        ("followup_years", pa.float64()), ("incident_vf", _I8), ("event_type", _I8),
        ("extra", pa.string()), ("source_row", pa.int32()),
    ]
)  # fmt: skip
# Columns whose difference makes a re-imported row "updated" (not where it came from).
_DATA_COLUMNS = [n for n in _CLINICAL_SCHEMA.names if n not in ("patient_id", "source_row")]
_LINK_SCHEMA = pa.schema(
    [
        ("patient_id", pa.string()), ("series_uid", pa.string()), ("study_uid", pa.string()),
        ("study_date", pa.date32()), ("n_scans", pa.int32()), ("scan_date", pa.date32()),
        ("date_gap_days", pa.int32()), ("date_disagrees", pa.bool_()),
        ("status", pa.string()),
    ]
)  # fmt: skip


@dataclass(frozen=True)
class UpsertCounts:
    """What an upsert did: rows ``inserted`` (new patient_id), ``updated`` (a value
    changed), ``unchanged``, ``removed`` (absent from the file, with replace) and ``kept``
    (absent from the file, kept without replace)."""

    inserted: int
    updated: int
    unchanged: int
    removed: int
    kept: int


def _arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def upsert_clinical(
    con: duckdb.DuckDBPyConnection,
    rows: pd.DataFrame,
    *,
    source_file: str,
    imported_at: dt.datetime,
    run_id: str,
    replace: bool,
) -> UpsertCounts:
    """Insert new patients, overwrite changed ones, and (with ``replace``) delete the rest.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection inside ``Store.write()``.
    rows : pandas.DataFrame
        Typed rows (``engine.clinical.validate.typed_frame``), unique ``patient_id``.
    source_file, imported_at, run_id
        Provenance stamped on inserted and updated rows.
    replace : bool
        Delete stored patients that are not in ``rows``.
    """
    con.register("_batch", _arrow(rows, _CLINICAL_SCHEMA))
    try:
        differs = " OR ".join(
            f"b.{c} IS DISTINCT FROM c.{c}" + ("::VARCHAR" if c == "extra" else "")
            for c in _DATA_COLUMNS
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _plan AS SELECT b.patient_id, "
            "c.patient_id IS NULL AS is_new, "
            f"c.patient_id IS NOT NULL AND ({differs}) AS changed "
            "FROM _batch b LEFT JOIN clinical c ON b.patient_id = c.patient_id"
        )
        inserted, updated, unchanged = con.execute(
            "SELECT count(*) FILTER (is_new), count(*) FILTER (changed), "
            "count(*) FILTER (NOT is_new AND NOT changed) FROM _plan"
        ).fetchone()
        absent = con.execute(
            "SELECT count(*) FROM clinical WHERE patient_id NOT IN (SELECT patient_id FROM _batch)"
        ).fetchone()[0]
        if replace:
            con.execute(
                "DELETE FROM clinical WHERE patient_id NOT IN (SELECT patient_id FROM _batch)"
            )
        con.execute(
            "DELETE FROM clinical WHERE patient_id IN (SELECT patient_id FROM _plan WHERE changed)"
        )
        con.execute(
            "INSERT INTO clinical BY NAME SELECT b.*, ? AS source_file, ? AS imported_at, "
            "? AS run_id FROM _batch b JOIN _plan p USING (patient_id) "
            "WHERE p.is_new OR p.changed",
            [source_file, imported_at, run_id],
        )
        con.execute("DROP TABLE _plan")
    finally:
        con.unregister("_batch")
    return UpsertCounts(
        inserted=int(inserted),
        updated=int(updated),
        unchanged=int(unchanged),
        removed=int(absent) if replace else 0,
        kept=0 if replace else int(absent),
    )


def clinical_dates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """``patient_id, scan_date`` of every stored clinical row, ordered by patient_id."""
    return con.execute("SELECT patient_id, scan_date FROM clinical ORDER BY patient_id").df()


def count_clinical(con: duckdb.DuckDBPyConnection) -> int:
    """Number of stored clinical rows."""
    return int(con.execute("SELECT count(*) FROM clinical").fetchone()[0])


def selected_scans(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """``series_uid, study_uid, patient_id, study_date`` of every selected series."""
    return con.execute(
        "SELECT series_uid, study_uid, patient_id, study_date FROM series WHERE selected "
        "ORDER BY series_uid"
    ).df()


def replace_links(
    con: duckdb.DuckDBPyConnection, links: pd.DataFrame, *, linked_at: dt.datetime, run_id: str
) -> None:
    """Replace ``clinical_links`` with ``links`` (``engine.clinical.link.LINK_COLUMNS``)."""
    con.execute("DELETE FROM clinical_links")
    if links.empty:
        return
    con.register("_links", _arrow(links, _LINK_SCHEMA))
    try:
        con.execute(
            "INSERT INTO clinical_links BY NAME SELECT *, ? AS linked_at, ? AS run_id FROM _links",
            [linked_at, run_id],
        )
    finally:
        con.unregister("_links")
