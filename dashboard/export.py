"""The worklist as shown and as exported: pseudonyms, columns, CSV, and the audit record."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from dashboard import data
from dashboard.ids import pseudonymize
from engine.store import Store
from engine.store import dashboard_tables as tables
from engine.store.dashboard_tables import CohortFilter, WorklistFilter

__all__ = ["present", "worklist_csv"]

_SHOWN = (
    "site", "sex", "age", "scan_date", "p_fracture", "risk_1y", "risk_2y", "risk_3y",
    "risk_4y", "risk_5y", "l1_hu", "muscle_area", "muscle_hu", "frax_mof",
)  # fmt: skip


def present(rows: pd.DataFrame, *, show_ids: bool, key: bytes) -> pd.DataFrame:
    """Worklist rows for display or export: ``patient`` (pseudonym unless ``show_ids``)
    first, DICOM UIDs dropped (they identify the scan too)."""
    ids = rows["patient_id"].tolist() if show_ids else pseudonymize(rows["patient_id"], key)
    out = rows.loc[:, list(_SHOWN)].copy()
    out.insert(0, "patient", ids)
    return out


def worklist_csv(
    db: Path,
    timeout: float,
    f: CohortFilter,
    w: WorklistFilter,
    *,
    limit: int,
    show_ids: bool,
    key: bytes,
    who: str,
) -> bytes:
    """The worklist as CSV (highest risk first, at most ``limit`` rows), recorded in audit.

    The audit row holds who exported, when, the filters and the number of rows; never
    the identifiers themselves.
    """
    with Store(db, lock_timeout_s=timeout).read() as con:
        rows, total = tables.worklist(con, f, w, limit)
    frame = present(rows, show_ids=show_ids, key=key)
    filters = {
        "cohort": dataclasses.asdict(f),
        "worklist": dataclasses.asdict(w),
        "identifiers": "shown" if show_ids else "pseudonymized",
        "matching": total,
    }
    data.record_audit(
        db, timeout, action="export_worklist", who=who, filters=filters, rows=len(frame)
    )
    return frame.to_csv(index=False).encode()
