"""SQL for the index tables (``files``, ``instances``, ``unreadable``, ``series``).

The indexer (``engine/index``) calls these functions with a connection from
``Store.write()`` or ``Store.read()``; it never writes SQL itself. Rows travel as Arrow
tables with explicit types (one bulk ``INSERT ... SELECT`` per table per batch).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import fields
from typing import Any

import duckdb
import pyarrow as pa

from engine.index.records import InstanceRecord, SeriesRecord, Unreadable

__all__ = [
    "delete_paths",
    "file_signatures",
    "insert_files",
    "insert_instances",
    "insert_unreadable",
    "load_instances",
    "load_series",
    "remove_under",
    "replace_series",
    "series_files",
    "series_of_studies",
    "study_uids_of",
    "summary_counts",
]

_F64_LIST = pa.list_(pa.float64())
_INSTANCE_SCHEMA = pa.schema(
    [
        ("path", pa.string()), ("series_uid", pa.string()), ("sop_uid", pa.string()),
        ("sop_class_uid", pa.string()), ("instance_number", pa.int32()),
        ("position", pa.float64()), ("frame_positions", _F64_LIST), ("frames", pa.int32()),
        ("size", pa.int64()), ("mtime_ns", pa.int64()), ("source", pa.string()),
        ("study_uid", pa.string()), ("patient_id", pa.string()), ("study_date", pa.date32()),
        ("series_number", pa.int32()), ("modality", pa.string()),
        ("manufacturer", pa.string()), ("model", pa.string()), ("institution", pa.string()),
        ("kernel", pa.string()), ("image_type", pa.string()),
        ("series_description", pa.string()), ("body_part", pa.string()),
        ("orientation", _F64_LIST), ("ipp", _F64_LIST), ("slice_thickness", pa.float64()),
        ("pixel_spacing", _F64_LIST), ("rows", pa.int32()), ("columns", pa.int32()),
        ("is_image", pa.bool_()),
    ]
)  # fmt: skip
_SERIES_TYPES: dict[str, pa.DataType] = {
    "study_date": pa.date32(), "series_number": pa.int32(), "is_image": pa.bool_(),
    "axial_angle_deg": pa.float64(), "slice_thickness": pa.float64(),
    "slice_spacing_mm": pa.float64(), "max_gap_mm": pa.float64(), "pixel_spacing": _F64_LIST,
    "rows": pa.int32(), "columns": pa.int32(), "n_instances": pa.int32(),
    "n_duplicates": pa.int32(), "n_slices": pa.int32(), "z_extent_mm": pa.float64(),
    "eligible": pa.bool_(), "selected": pa.bool_(), "indexed_at": pa.timestamp("us"),
}  # fmt: skip
_SERIES_SCHEMA = pa.schema(
    [(f.name, _SERIES_TYPES.get(f.name, pa.string())) for f in fields(SeriesRecord)]
)
_INSTANCE_COLUMNS = ", ".join(_INSTANCE_SCHEMA.names)
#: Instance columns copied as they are from ``InstanceRecord`` attributes of the same name.
_INSTANCE_PLAIN_COLUMNS = [
    n
    for n in _INSTANCE_SCHEMA.names
    if n not in ("orientation", "ipp", "pixel_spacing", "position", "frame_positions")
]
_SERIES_COLUMNS = ", ".join(_SERIES_SCHEMA.names)


def _insert(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    if data.num_rows == 0:
        return
    con.register("_batch", data)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _batch")
    finally:
        con.unregister("_batch")


def _delete_keys(con: duckdb.DuckDBPyConnection, table: str, column: str, keys: list[str]) -> None:
    if not keys:
        return
    con.register("_keys", pa.table({"k": pa.array(keys, pa.string())}))
    try:
        con.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT k FROM _keys)")
    finally:
        con.unregister("_keys")


def file_signatures(con: duckdb.DuckDBPyConnection, prefix: str) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of every indexed file whose path starts with ``prefix``."""
    rows = con.execute(
        "SELECT path, size, mtime_ns FROM files WHERE starts_with(path, ?)", [prefix]
    ).fetchall()
    return {p: (int(s), int(m)) for p, s, m in rows}


def delete_paths(con: duckdb.DuckDBPyConnection, paths: Collection[str]) -> set[str]:
    """Forget these paths in files, instances and unreadable; return their series UIDs."""
    keys = list(paths)
    if not keys:
        return set()
    con.register("_keys", pa.table({"k": pa.array(keys, pa.string())}))
    try:
        touched = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT series_uid FROM instances WHERE path IN (SELECT k FROM _keys)"
            ).fetchall()
        }
        for table in ("instances", "unreadable", "files"):
            con.execute(f"DELETE FROM {table} WHERE path IN (SELECT k FROM _keys)")
    finally:
        con.unregister("_keys")
    return touched


def remove_under(con: duckdb.DuckDBPyConnection, prefix: str, keep: Collection[str]) -> set[str]:
    """Forget indexed paths under ``prefix`` that are not in ``keep``; return their series."""
    gone = [p for p in file_signatures(con, prefix) if p not in keep]
    return delete_paths(con, gone)


def _lists(values: Iterable[tuple[float, ...] | None]) -> list[list[float] | None]:
    return [list(v) if v is not None else None for v in values]


def insert_instances(con: duckdb.DuckDBPyConnection, records: Sequence[InstanceRecord]) -> None:
    """Insert instance rows (the caller has deleted any old rows of the same paths)."""
    cols: dict[str, list[Any]] = {
        name: [getattr(r, name) for r in records] for name in _INSTANCE_PLAIN_COLUMNS
    }
    for key in ("orientation", "ipp", "pixel_spacing"):
        cols[key] = _lists(getattr(r, key) for r in records)
    cols["position"] = [r.positions[0] if r.positions else None for r in records]
    cols["frame_positions"] = [list(r.positions) if r.positions else None for r in records]
    _insert(con, "instances", pa.table(cols, schema=_INSTANCE_SCHEMA))


def insert_unreadable(con: duckdb.DuckDBPyConnection, items: Sequence[Unreadable]) -> None:
    """Insert unreadable rows (the caller has deleted any old rows of the same paths)."""
    data = pa.table(
        {
            "path": [u.path for u in items],
            "reason_code": [u.reason_code for u in items],
            "reason": [u.reason for u in items],
            "size": pa.array([u.size for u in items], pa.int64()),
            "mtime_ns": pa.array([u.mtime_ns for u in items], pa.int64()),
        }
    )
    _insert(con, "unreadable", data)


def insert_files(
    con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[str, int, int, str]], now: dt.datetime
) -> None:
    """Insert ``(path, size, mtime_ns, status)`` rows into ``files`` stamped ``now``."""
    data = pa.table(
        {
            "path": pa.array([r[0] for r in rows], pa.string()),
            "size": pa.array([r[1] for r in rows], pa.int64()),
            "mtime_ns": pa.array([r[2] for r in rows], pa.int64()),
            "status": pa.array([r[3] for r in rows], pa.string()),
            "indexed_at": pa.array([now] * len(rows), pa.timestamp("us")),
        }
    )
    _insert(con, "files", data)


def _tuple(value: Any) -> tuple[float, ...] | None:
    return tuple(float(v) for v in value) if value is not None else None


def load_instances(
    con: duckdb.DuckDBPyConnection, series_uids: Collection[str]
) -> list[InstanceRecord]:
    """Every stored instance of these series, as records."""
    if not series_uids:
        return []
    con.register("_keys", pa.table({"k": pa.array(list(series_uids), pa.string())}))
    try:
        table = con.sql(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE series_uid IN (SELECT k FROM _keys)"
        ).to_arrow_table()
    finally:
        con.unregister("_keys")
    out = []
    names = {f.name for f in fields(InstanceRecord)}
    for row in table.to_pylist():
        row["positions"] = tuple(row.pop("frame_positions") or ())
        row.pop("position")
        for key in ("orientation", "ipp", "pixel_spacing"):
            row[key] = _tuple(row[key])
        out.append(InstanceRecord(**{k: v for k, v in row.items() if k in names}))
    return out


def study_uids_of(con: duckdb.DuckDBPyConnection, series_uids: Collection[str]) -> set[str]:
    """Study UIDs the stored ``series`` rows of these series belong to."""
    if not series_uids:
        return set()
    con.register("_keys", pa.table({"k": pa.array(list(series_uids), pa.string())}))
    try:
        rows = con.execute(
            "SELECT DISTINCT study_uid FROM series WHERE series_uid IN (SELECT k FROM _keys)"
        ).fetchall()
    finally:
        con.unregister("_keys")
    return {r[0] for r in rows}


def _series_records(table: pa.Table) -> list[SeriesRecord]:
    out = []
    for row in table.to_pylist():
        row["pixel_spacing"] = _tuple(row["pixel_spacing"])
        out.append(SeriesRecord(**row))
    return out


def load_series(con: duckdb.DuckDBPyConnection) -> list[SeriesRecord]:
    """Every stored series."""
    table = con.sql(f"SELECT {_SERIES_COLUMNS} FROM series").to_arrow_table()
    return _series_records(table)


def series_of_studies(
    con: duckdb.DuckDBPyConnection, study_uids: Collection[str]
) -> list[SeriesRecord]:
    """Every stored series of these studies."""
    if not study_uids:
        return []
    con.register("_keys", pa.table({"k": pa.array(list(study_uids), pa.string())}))
    try:
        table = con.sql(
            f"SELECT {_SERIES_COLUMNS} FROM series WHERE study_uid IN (SELECT k FROM _keys)"
        ).to_arrow_table()
    finally:
        con.unregister("_keys")
    return _series_records(table)


def replace_series(
    con: duckdb.DuckDBPyConnection, remove: Iterable[str], records: Sequence[SeriesRecord]
) -> None:
    """Delete the series in ``remove`` and those of ``records``, then insert ``records``."""
    keys = sorted(set(remove) | {r.series_uid for r in records})
    _delete_keys(con, "series", "series_uid", keys)
    cols: dict[str, list[Any]] = {name: [] for name in _SERIES_SCHEMA.names}
    for r in records:
        for name in cols:
            value = getattr(r, name)
            cols[name].append(list(value) if name == "pixel_spacing" and value else value)
    _insert(con, "series", pa.table(cols, schema=_SERIES_SCHEMA))


def summary_counts(con: duckdb.DuckDBPyConnection, prefix: str) -> dict[str, Any]:
    """Counts of what is indexed under ``prefix``: unreadable by reason, series, studies,
    patients, eligible, selected, excluded series by reason, studies without a selection."""
    unreadable = dict(
        con.execute(
            "SELECT reason_code, count(*) FROM unreadable WHERE starts_with(path, ?) "
            "GROUP BY 1 ORDER BY 2 DESC, 1",
            [prefix],
        ).fetchall()
    )
    scope = (
        "FROM series WHERE series_uid IN "
        "(SELECT series_uid FROM instances WHERE starts_with(path, ?))"
    )
    row = con.execute(
        "SELECT count(*), count(DISTINCT study_uid), count(DISTINCT patient_id), "
        "count(*) FILTER (eligible), count(*) FILTER (selected), "
        "count(DISTINCT study_uid) - count(DISTINCT study_uid) FILTER (selected) " + scope,
        [prefix],
    ).fetchone()
    excluded = dict(
        con.execute(
            f"SELECT reason_code, count(*) {scope} AND NOT selected GROUP BY 1 ORDER BY 2 DESC, 1",
            [prefix],
        ).fetchall()
    )
    keys = ("series", "studies", "patients", "eligible", "selected", "studies_without_selection")
    out: dict[str, Any] = dict(zip(keys, (int(v) for v in row), strict=True))
    out["unreadable"] = unreadable
    out["excluded"] = excluded
    return out


def series_files(con: duckdb.DuckDBPyConnection, series_uid: str) -> list[str]:
    """Paths of a series' instances, ordered by position along the slice normal."""
    rows = con.execute(
        "SELECT path FROM instances WHERE series_uid = ? ORDER BY position, instance_number, path",
        [series_uid],
    ).fetchall()
    return [r[0] for r in rows]
