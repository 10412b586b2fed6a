"""Cached access to the database for the pages: one read batch per query, keyed on the data.

Every call opens the database read-only through :meth:`engine.store.Store.read` (the
phase-fair locks let ``vfrisk score`` keep writing) and runs one function of
:mod:`engine.store.dashboard_tables`. Results are cached with ``st.cache_data`` under the
database path, its :func:`data_version` (size and mtime of the file and its WAL, so a
write by another process invalidates them) and the arguments: a filter change recomputes
only the queries whose arguments changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from engine.store import Store
from engine.store import dashboard_tables as tables

__all__ = ["data_version", "query", "record_audit"]


def data_version(db: Path) -> tuple[int, ...]:
    """(mtime_ns, size) of the database file and of its write-ahead log, when present."""
    out: list[int] = []
    for p in (db, db.with_name(db.name + ".wal")):
        try:
            s = p.stat()
            out += [s.st_mtime_ns, s.st_size]
        except FileNotFoundError:
            out += [0, 0]
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=512)
def _cached(db: str, version: tuple[int, ...], timeout: float, name: str, *args: Any) -> Any:
    del version  # part of the cache key only
    with Store(db, lock_timeout_s=timeout).read() as con:
        return getattr(tables, name)(con, *args)


def query(db: Path, timeout: float, name: str, *args: Any) -> Any:
    """Run ``dashboard_tables.<name>(con, *args)`` on ``db``, cached per data version."""
    return _cached(str(db), data_version(db), timeout, name, *args)


def writable(db: Path) -> bool:
    """Whether the audited actions (identifiers, export) can record their row here."""
    return Store(db).writable()


def record_audit(db: Path, timeout: float, **fields: Any) -> str:
    """Write one audit row in its own short write transaction; return its id."""
    with Store(db, lock_timeout_s=timeout).write() as con:
        return tables.insert_audit(con, **fields)
