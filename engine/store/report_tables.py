"""SQL of ``vfrisk report``: read predictions, clinical data and links; write evaluation rows.

``engine.report`` calls these with a connection from ``Store.read()`` or
``Store.write()``; it never writes SQL itself. The ``predictions`` and ``models`` tables
may be empty (no scoring yet) and the ``biomarkers`` table may be absent (issue 4); every
reader here copes with both.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pyarrow as pa

__all__ = [
    "EVALUATION_COLUMNS",
    "analysis_rows",
    "has_l1_biomarker",
    "insert_evaluation",
    "link_status_counts",
    "models_with_predictions",
    "table_names",
]

EVALUATION_COLUMNS = (
    "score", "site", "subgroup", "horizon", "metric", "estimate", "ci_low", "ci_high",
    "p_value", "n", "events", "method",
)  # fmt: skip
_EVALUATION_SCHEMA = pa.schema(
    [
        ("score", pa.string()), ("site", pa.string()), ("subgroup", pa.string()),
        ("horizon", pa.float64()), ("metric", pa.string()), ("estimate", pa.float64()),
        ("ci_low", pa.float64()), ("ci_high", pa.float64()), ("p_value", pa.float64()),
        ("n", pa.int32()), ("events", pa.int32()), ("method", pa.string()),
    ]
)  # fmt: skip


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the tables and views in the database."""
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views() "
        "WHERE NOT internal"
    ).fetchall()
    return {r[0] for r in rows}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]
    ).fetchall()
    return {r[0] for r in rows}


def has_l1_biomarker(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a ``biomarkers`` table with ``series_uid``, ``level`` and ``trabecular_hu``
    exists and holds at least one L1 value (issue 4 writes it; the report never does)."""
    if "biomarkers" not in table_names(con):
        return False
    if not {"series_uid", "level", "trabecular_hu"} <= _columns(con, "biomarkers"):
        return False
    n = con.execute(
        "SELECT count(*) FROM biomarkers WHERE level = 'L1' AND trabecular_hu IS NOT NULL"
    ).fetchone()[0]
    return int(n) > 0


def models_with_predictions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every model in ``models`` with its prediction count and latest ``scored_at``.

    Columns ``model_id, name, path, sha256, preprocessing_version, card, created_at,
    n_predictions, last_scored``, newest first (last scored, then created).
    """
    return con.execute(
        "SELECT m.model_id, m.name, m.path, m.sha256, m.preprocessing_version, "
        "m.card::VARCHAR AS card, m.created_at, count(p.series_uid) AS n_predictions, "
        "max(p.scored_at) AS last_scored FROM models m "
        "LEFT JOIN predictions p USING (model_id) GROUP BY ALL "
        "ORDER BY last_scored DESC NULLS LAST, created_at DESC NULLS LAST, model_id"
    ).df()


def link_status_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of ``clinical_links`` per status ('linked', 'no_scan', 'no_clinical')."""
    rows = con.execute("SELECT status, count(*) FROM clinical_links GROUP BY status").fetchall()
    return {str(s): int(n) for s, n in rows}


def analysis_rows(
    con: duckdb.DuckDBPyConnection, model_id: str | None, *, with_l1_hu: bool
) -> pd.DataFrame:
    """One row per clinical patient with its index scan, prediction and L1 HU.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    model_id : str, optional
        Model whose predictions to join on the patient's index scan (``clinical_links``
        status 'linked'); None joins none (the columns are NULL).
    with_l1_hu : bool
        Join ``biomarkers`` (level 'L1', mean ``trabecular_hu`` of the index scan over
        preprocessing versions); only when :func:`has_l1_biomarker`.

    Returns
    -------
    pandas.DataFrame
        Clinical columns (``patient_id, site, sex, age, prevalent_vf, frax_mof, frax_hip,
        scan_date, followup_years, event_type``), ``link_status``, ``series_uid``,
        ``study_date``, ``p_fracture``, ``risk_1y`` .. ``risk_5y``, ``has_prediction`` and
        ``l1_hu``; ordered by ``patient_id``.
    """
    hu_join = (
        "LEFT JOIN (SELECT series_uid, avg(trabecular_hu) AS l1_hu FROM biomarkers "
        "WHERE level = 'L1' GROUP BY series_uid) b ON b.series_uid = l.series_uid "
        if with_l1_hu
        else ""
    )
    hu_col = "b.l1_hu" if with_l1_hu else "NULL::DOUBLE"
    return con.execute(
        "SELECT c.patient_id, c.site, c.sex, c.age, c.prevalent_vf, c.frax_mof, c.frax_hip, "
        "c.scan_date, c.followup_years, c.event_type, "
        "coalesce(l.status, 'no_scan') AS link_status, l.series_uid, l.study_date, "
        "p.p_fracture, p.risk_1y, p.risk_2y, p.risk_3y, p.risk_4y, p.risk_5y, "
        f"p.series_uid IS NOT NULL AS has_prediction, {hu_col} AS l1_hu "
        "FROM clinical c "
        "LEFT JOIN clinical_links l ON l.patient_id = c.patient_id AND l.status = 'linked' "
        "LEFT JOIN predictions p ON p.series_uid = l.series_uid AND p.model_id = ? "
        f"{hu_join}"
        "ORDER BY c.patient_id",
        [model_id],
    ).df()


def insert_evaluation(
    con: duckdb.DuckDBPyConnection,
    rows: pd.DataFrame,
    *,
    run_id: str,
    model_id: str | None,
    computed_at: dt.datetime,
) -> int:
    """Append one report run's long evaluation table; returns the rows written.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection inside ``Store.write()``.
    rows : pandas.DataFrame
        Columns :data:`EVALUATION_COLUMNS`, unique by (score, site, subgroup, horizon,
        metric).
    run_id, model_id, computed_at
        Stamped on every row (model_id None for a FRAX-only report).
    """
    if rows.empty:
        return 0
    frame = rows[list(EVALUATION_COLUMNS)].copy()
    for col in ("n", "events"):
        frame[col] = frame[col].astype("Int32")
    con.register(
        "_eval", pa.Table.from_pandas(frame, schema=_EVALUATION_SCHEMA, preserve_index=False)
    )
    try:
        con.execute(
            "INSERT INTO evaluation BY NAME SELECT ? AS run_id, ?::VARCHAR AS model_id, "
            "*, ? AS computed_at FROM _eval",
            [run_id, model_id, computed_at],
        )
    finally:
        con.unregister("_eval")
    return len(frame)
