"""SQL of ``vfrisk experiments``: one row per clinical patient with its factors and biomarkers.

``models.experiments`` calls :func:`comparator_frame` with a connection from
``Store.read()``; the evaluation rows it produces are written with
:func:`engine.store.report_tables.insert_evaluation`, the same way as ``vfrisk report``.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from engine.store.report_tables import table_names

__all__ = ["CLINICAL_FACTOR_COLUMNS", "comparator_frame"]

#: Clinical risk factors of the clinical table (the FRAX inputs bar BMD), as stored.
CLINICAL_FACTOR_COLUMNS = (
    "age", "sex", "bmi", "prior_fracture", "parent_hip_fracture", "current_smoking",
    "glucocorticoids", "rheumatoid_arthritis", "secondary_osteoporosis", "alcohol_3plus",
)  # fmt: skip

_BIOMARKERS = (
    "SELECT series_uid, "
    "any_value(series_mean_trabecular_hu) AS mean_trabecular_hu, "
    "any_value(series_l1_trabecular_hu) AS l1_trabecular_hu, "
    "any_value(series_l3_muscle_area_cm2) AS l3_muscle_area_cm2, "
    "any_value(series_l3_muscle_hu) AS l3_muscle_hu, "
    "any_value(smi_cm2_m2) AS smi_cm2_m2, "
    "max(genant_grade)::DOUBLE AS max_genant_grade "
    "FROM biomarkers WHERE preprocessing_version = ? GROUP BY series_uid"
)


def comparator_frame(con: duckdb.DuckDBPyConnection, preprocessing_version: str) -> pd.DataFrame:
    """Every clinical patient with outcome, clinical factors, FRAX, index scan and biomarkers.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        From ``Store.read()``.
    preprocessing_version : str
        The ``biomarkers`` rows to join (one version: a series measured under several
        versions would otherwise count twice).

    Returns
    -------
    pandas.DataFrame
        Columns ``patient_id, site``, :data:`CLINICAL_FACTOR_COLUMNS`, ``prevalent_vf,
        frax_mof, frax_hip, followup_years, event_type``, ``series_uid`` (the index scan of
        ``clinical_links`` status 'linked'; NULL without one) and the series biomarkers
        ``mean_trabecular_hu, l1_trabecular_hu, l3_muscle_area_cm2, l3_muscle_hu,
        smi_cm2_m2`` and ``max_genant_grade`` (estimated Genant grade, highest over the
        assessable levels T12-L4); NaN where missing. Ordered by ``patient_id``.
    """
    has_bio = "biomarkers" in table_names(con)
    bio_cols = (
        "mean_trabecular_hu", "l1_trabecular_hu", "l3_muscle_area_cm2", "l3_muscle_hu",
        "smi_cm2_m2", "max_genant_grade",
    )  # fmt: skip
    select_bio = ", ".join(f"b.{c}" if has_bio else f"NULL::DOUBLE AS {c}" for c in bio_cols)
    join_bio = f"LEFT JOIN ({_BIOMARKERS}) b ON b.series_uid = l.series_uid " if has_bio else ""
    clinical = ", ".join(f"c.{c}" for c in CLINICAL_FACTOR_COLUMNS)
    return con.execute(
        f"SELECT c.patient_id, c.site, {clinical}, c.prevalent_vf, c.frax_mof, c.frax_hip, "
        "c.followup_years, c.event_type, l.series_uid, "
        f"{select_bio} FROM clinical c "
        "LEFT JOIN clinical_links l ON l.patient_id = c.patient_id AND l.status = 'linked' "
        f"{join_bio}ORDER BY c.patient_id",
        [preprocessing_version] if has_bio else [],
    ).df()
