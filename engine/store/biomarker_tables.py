"""SQL for the ``biomarkers`` table (one row per series, level and preprocessing version).

``vfrisk score`` calls :func:`insert_biomarkers` with a connection from ``Store.write()``
and readers call :func:`read_biomarkers` with one from ``Store.read()``; nothing else
writes this table's SQL. NaN measures are stored as NULL and read back as NaN, so a
:class:`~engine.anatomy.biomarkers.Biomarkers` record round-trips unchanged.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import fields

import duckdb

from engine.anatomy.biomarkers import Biomarkers, LevelBiomarkers

__all__ = ["BIOMARKER_COLUMNS", "insert_biomarkers", "read_biomarkers"]

_LEVEL_FIELDS = tuple(f.name for f in fields(LevelBiomarkers) if f.name not in ("level", "flags"))
_SERIES_FIELDS = (
    ("series_mean_trabecular_hu", "mean_trabecular_hu"),
    ("series_l1_trabecular_hu", "l1_trabecular_hu"),
    ("series_l3_muscle_area_cm2", "l3_muscle_area_cm2"),
    ("series_l3_muscle_hu", "l3_muscle_hu"),
    ("smi_cm2_m2", "smi_cm2_m2"),
    ("height_cm", "height_cm"),
    ("contrast", "contrast"),
)
#: Columns written per row, in order.
BIOMARKER_COLUMNS: tuple[str, ...] = (
    "series_uid", "level", "preprocessing_version", *_LEVEL_FIELDS, "flags",
    *(c for c, _ in _SERIES_FIELDS), "series_flags", "run_id", "measured_at",
)  # fmt: skip


def _sql(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _py(value: object) -> object:
    return math.nan if value is None else value


def insert_biomarkers(
    con: duckdb.DuckDBPyConnection,
    records: list[Biomarkers],
    *,
    preprocessing_version: str,
    run_id: str | None = None,
    measured_at: dt.datetime | None = None,
) -> int:
    """Write (replace) the rows of each series for ``preprocessing_version``.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        From ``Store.write()`` (one transaction).
    records : list of Biomarkers
    preprocessing_version : str
        ``[preprocessing] version`` the biomarkers were measured under.
    run_id : str, optional
    measured_at : datetime, optional
        Default now (UTC).

    Returns
    -------
    int
        Rows written.
    """
    when = measured_at or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = []
    for rec in records:
        con.execute(
            "DELETE FROM biomarkers WHERE series_uid = ? AND preprocessing_version = ?",
            [rec.series_uid, preprocessing_version],
        )
        series = [_sql(getattr(rec, attr)) for _, attr in _SERIES_FIELDS]
        for lv in rec.levels:
            rows.append(
                [rec.series_uid, lv.level, preprocessing_version]
                + [_sql(getattr(lv, name)) for name in _LEVEL_FIELDS]
                + [",".join(lv.flags), *series, ",".join(rec.flags), run_id, when]
            )
    if rows:
        marks = ", ".join("?" for _ in BIOMARKER_COLUMNS)
        con.executemany(
            f"INSERT INTO biomarkers ({', '.join(BIOMARKER_COLUMNS)}) VALUES ({marks})", rows
        )
    return len(rows)


def read_biomarkers(
    con: duckdb.DuckDBPyConnection,
    *,
    preprocessing_version: str,
    series_uids: list[str] | None = None,
) -> list[Biomarkers]:
    """Read the biomarkers of some or all series measured under ``preprocessing_version``.

    Returns
    -------
    list of Biomarkers
        Ordered by ``series_uid``; levels in the stored T12..L4 order.
    """
    where = "preprocessing_version = ?"
    params: list[object] = [preprocessing_version]
    if series_uids is not None:
        if not series_uids:
            return []
        where += f" AND series_uid IN ({', '.join('?' for _ in series_uids)})"
        params += list(series_uids)
    order = (
        "CASE level WHEN 'T12' THEN 0 WHEN 'L1' THEN 1 WHEN 'L2' THEN 2 WHEN 'L3' THEN 3 ELSE 4 END"
    )
    cur = con.execute(
        f"SELECT {', '.join(BIOMARKER_COLUMNS)} FROM biomarkers WHERE {where} "
        f"ORDER BY series_uid, {order}",
        params,
    )
    names = [d[0] for d in cur.description]
    out: list[Biomarkers] = []
    current: list[dict[str, object]] = []

    def flush() -> None:
        if not current:
            return
        first = current[0]
        levels = tuple(
            LevelBiomarkers(
                level=str(r["level"]),
                flags=tuple(f for f in str(r["flags"]).split(",") if f),
                **{
                    n: (
                        (None if r[n] is None else int(r[n]))
                        if n == "genant_grade"
                        else r[n]
                        if n in ("present", "shape")
                        else _py(r[n])
                    )
                    for n in _LEVEL_FIELDS
                },
            )
            for r in current
        )
        contrast = first["contrast"]
        out.append(
            Biomarkers(
                series_uid=str(first["series_uid"]),
                levels=levels,
                flags=tuple(f for f in str(first["series_flags"]).split(",") if f),
                contrast=None if contrast is None else bool(contrast),
                **{attr: _py(first[col]) for col, attr in _SERIES_FIELDS if attr != "contrast"},
            )
        )
        current.clear()

    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        if current and row["series_uid"] != current[0]["series_uid"]:
            flush()
        current.append(row)
    flush()
    return out
