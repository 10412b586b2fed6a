"""Pure linking of clinical rows to indexed scans by patient id.

The clinical ``patient_id`` must equal the DICOM PatientID of the patient's CT; only the
series the index *selected* (one per study, the one to score) are candidates, so scoring
is not needed to link. When a patient has several selected scans (several studies), the
index scan is the earliest StudyDate (``[clinical] index_scan = "latest"`` picks the last;
ties broken by StudyInstanceUID, then SeriesInstanceUID) and follow-up is counted from its
date. A clinical ``scan_date`` further than ``scan_date_tolerance_days`` from that
StudyDate is flagged (``date_disagrees``): a warning, since the time origin is doubtful.

One output row per clinical patient (``linked`` or ``no_scan``) plus one per selected
series whose PatientID has no clinical row (``no_clinical``), so nothing is dropped
silently.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["LINK_COLUMNS", "LinkCounts", "link_counts", "link_patients"]

LINK_COLUMNS = (
    "patient_id",
    "series_uid",
    "study_uid",
    "study_date",
    "n_scans",
    "scan_date",
    "date_gap_days",
    "date_disagrees",
    "status",
)


@dataclass(frozen=True)
class LinkCounts:
    """Counts over a links table (see :func:`link_counts`).

    ``examples`` holds up to a few ``(patient_id, scan_date, study_date, gap_days)`` of
    the scan-date disagreements, largest gap first.
    """

    linked: int
    no_scan: int
    scans_without_patient: int
    patients_without_clinical: int
    date_disagreements: int
    examples: tuple[tuple[str, dt.date, dt.date, int], ...] = ()


def _date(value: Any) -> dt.date | None:
    return value.date() if pd.notna(value) else None


def link_patients(
    clinical: pd.DataFrame,
    scans: pd.DataFrame,
    *,
    index_scan: str = "earliest",
    tolerance_days: int = 30,
) -> pd.DataFrame:
    """Link clinical patients to their index scans.

    Parameters
    ----------
    clinical : pandas.DataFrame
        Columns ``patient_id`` (unique) and ``scan_date`` (date or missing).
    scans : pandas.DataFrame
        The selected series: ``series_uid``, ``study_uid``, ``patient_id`` (DICOM
        PatientID, may be missing) and ``study_date`` (may be missing).
    index_scan : str
        ``earliest`` or ``latest``: which of a patient's scans is the index scan.
    tolerance_days : int
        Largest ``|scan_date - study_date|`` in days not flagged as a disagreement.

    Returns
    -------
    pandas.DataFrame
        Columns ``LINK_COLUMNS``: ``status`` is ``linked``, ``no_scan`` (clinical row,
        no selected scan) or ``no_clinical`` (selected scan, no clinical row; one row per
        series); ``date_gap_days`` = scan_date - study_date in days (missing when either
        date is); ``n_scans`` = the patient's selected scans.
    """
    scans = scans.assign(study_date=pd.to_datetime(scans["study_date"]))
    known = scans[scans["patient_id"].notna() & (scans["patient_id"] != "")]
    n_scans = known.groupby("patient_id").size()
    ordered = known.sort_values(
        ["patient_id", "study_date", "study_uid", "series_uid"],
        ascending=[True, index_scan == "earliest", True, True],
        na_position="last",
    )
    first = ordered.drop_duplicates("patient_id", keep="first").set_index("patient_id")
    rows = []
    for pid, scan_date in zip(clinical["patient_id"], clinical["scan_date"], strict=True):
        clinical_date = pd.Timestamp(scan_date) if pd.notna(scan_date) else pd.NaT
        if pid not in first.index:
            rows.append((pid, None, None, None, 0, _date(clinical_date), None, False, "no_scan"))
            continue
        scan = first.loc[pid]
        gap = None
        if pd.notna(clinical_date) and pd.notna(scan["study_date"]):
            gap = int((clinical_date - scan["study_date"]).days)
        rows.append(
            (
                pid, scan["series_uid"], scan["study_uid"], _date(scan["study_date"]),
                int(n_scans[pid]), _date(clinical_date), gap,
                gap is not None and abs(gap) > tolerance_days, "linked",
            )
        )  # fmt: skip
    have = set(clinical["patient_id"])
    orphans = scans[~scans["patient_id"].isin(have) | scans["patient_id"].isna()]
    for scan in orphans.sort_values(["patient_id", "study_uid", "series_uid"]).itertuples():
        pid = scan.patient_id if pd.notna(scan.patient_id) and scan.patient_id else None
        rows.append(
            (
                pid, scan.series_uid, scan.study_uid, _date(scan.study_date),
                int(n_scans.get(pid, 1)) if pid else 1, None, None, False, "no_clinical",
            )
        )  # fmt: skip
    out = pd.DataFrame(rows, columns=list(LINK_COLUMNS))
    out["n_scans"] = out["n_scans"].astype("int32")
    out["date_gap_days"] = out["date_gap_days"].astype("Int32")
    out["date_disagrees"] = out["date_disagrees"].astype(bool)
    return out


def link_counts(links: pd.DataFrame, n_examples: int = 5) -> LinkCounts:
    """Counts of a :func:`link_patients` table, with the largest date disagreements."""
    status = links["status"]
    orphans = links[status == "no_clinical"]
    off = links[links["date_disagrees"].astype(bool)]
    off = off.assign(_abs=off["date_gap_days"].abs()).sort_values(
        ["_abs", "patient_id"], ascending=[False, True]
    )
    examples = tuple(
        (r.patient_id, r.scan_date, r.study_date, int(r.date_gap_days))
        for r in off.head(n_examples).itertuples()
    )
    return LinkCounts(
        linked=int((status == "linked").sum()),
        no_scan=int((status == "no_scan").sum()),
        scans_without_patient=len(orphans),
        patients_without_clinical=int(orphans["patient_id"].nunique(dropna=False)),
        date_disagreements=len(off),
        examples=examples,
    )
