"""Pure linking: index scan choice, patients without scans, scans without patients, dates."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from engine.clinical.link import link_counts, link_patients

D = dt.date


def _scans() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("s1", "st1", "P1", D(2016, 5, 1)),
            ("s2", "st2", "P1", D(2015, 1, 10)),  # P1's earliest
            ("s3", "st3", "P2", D(2017, 3, 3)),
            ("s4", "st4", "ORPHAN", D(2018, 1, 1)),
            ("s5", "st5", None, None),
        ],
        columns=["series_uid", "study_uid", "patient_id", "study_date"],
    )


def _clinical() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["P1", "P2", "P3"],
            "scan_date": [D(2015, 1, 12), D(2017, 6, 1), None],
        }
    )


def test_earliest_scan_is_the_index_scan_and_nothing_is_dropped() -> None:
    links = link_patients(_clinical(), _scans(), tolerance_days=30).set_index("series_uid")
    assert links.loc["s2", "patient_id"] == "P1" and links.loc["s2", "n_scans"] == 2
    assert links.loc["s2", "date_gap_days"] == 2 and not links.loc["s2", "date_disagrees"]
    assert links.loc["s3", "date_gap_days"] == 90 and links.loc["s3", "date_disagrees"]
    assert links.loc["s4", "status"] == "no_clinical" and links.loc["s5", "status"] == "no_clinical"
    assert "s1" not in links.index  # P1's later scan is not an index scan
    counts = link_counts(links.reset_index())
    assert (counts.linked, counts.no_scan, counts.scans_without_patient) == (2, 1, 2)
    assert counts.patients_without_clinical == 2  # 'ORPHAN' and a missing PatientID
    assert counts.date_disagreements == 1
    assert counts.examples == (("P2", D(2017, 6, 1), D(2017, 3, 3), 90),)


def test_latest_scan_when_configured() -> None:
    links = link_patients(_clinical(), _scans(), index_scan="latest")
    p1 = links[links.patient_id == "P1"].iloc[0]
    assert p1.series_uid == "s1" and p1.study_date == D(2016, 5, 1)
    assert p1.date_gap_days == (D(2015, 1, 12) - D(2016, 5, 1)).days


def test_patient_without_scan_keeps_its_row() -> None:
    links = link_patients(_clinical(), _scans())
    p3 = links[links.patient_id == "P3"].iloc[0]
    assert p3.status == "no_scan" and p3.series_uid is None and p3.n_scans == 0
    assert pd.isna(p3.date_gap_days) and not p3.date_disagrees


def test_tolerance_is_inclusive() -> None:
    links = link_patients(_clinical(), _scans(), tolerance_days=90)
    assert not links.date_disagrees.any()
