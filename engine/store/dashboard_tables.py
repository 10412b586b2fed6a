"""SQL of ``vfrisk dashboard``: filtered cohort aggregates, worklist rows and the audit table.

The dashboard never writes SQL itself; every query is here, parameterized (user input only
ever travels as a bound parameter, column names only from the whitelists below), and
returns aggregates, never a whole table: on a million patients a page transfers a few
thousand rows at most. Reads use a connection from ``Store.read()``; the only write is
:func:`insert_audit` (one short ``Store.write()`` transaction per worklist export).

Patients are the rows of ``clinical`` (site, sex and age come from there); each is joined
to its index scan through ``clinical_links`` (status 'linked'), to that scan's prediction
of the chosen model and, where asked, to its series-level biomarkers (row of level L1,
which ``vfrisk score`` writes for every series, present or not; of the preprocessing
version measured last when there are several, :data:`LATEST_BIOMARKERS`). The scan date is the
index scan's DICOM StudyDate, else the clinical ``scan_date``. Follow-up is grouped by
whole days (``round(followup_years * 365.25)``) for survival curves: exact for dates, and
it bounds the transfer at a few thousand rows per curve.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from engine.store.report_tables import table_names

__all__ = [
    "DAYS_PER_YEAR",
    "LATEST_BIOMARKERS",
    "HISTOGRAM_COLUMNS",
    "ROC_BINS",
    "SCORE_COLUMNS",
    "CohortFilter",
    "WorklistFilter",
    "calibration_counts",
    "cohort_size",
    "data_quality",
    "decision_sample",
    "demographics",
    "evaluation_rows",
    "filter_options",
    "funnel",
    "histograms",
    "insert_audit",
    "model_card",
    "patient_detail",
    "qa_png",
    "read_audit",
    "recent_runs",
    "roc_counts",
    "survival_counts",
    "table_counts",
    "worklist",
]

DAYS_PER_YEAR = 365.25
#: The preprocessing version whose biomarkers the pages show: the one measured last (by
#: name, ``max`` would rank "pp9" above "pp10").
LATEST_BIOMARKERS = "(SELECT arg_max(preprocessing_version, measured_at) FROM biomarkers)"

#: Histogram columns: name -> (SQL expression over the cohort, needs biomarkers).
HISTOGRAM_COLUMNS: dict[str, tuple[str, bool]] = {
    "risk_1y": ("risk_1y", False),
    "risk_2y": ("risk_2y", False),
    "risk_3y": ("risk_3y", False),
    "risk_4y": ("risk_4y", False),
    "risk_5y": ("risk_5y", False),
    "p_fracture": ("p_fracture", False),
    "age": ("age", False),
    "l1_hu": ("l1_hu", True),
    "muscle_area": ("muscle_area", True),
    "muscle_hu": ("muscle_hu", True),
}
#: Scores for risk groups and ROC curves: name -> SQL column (higher = higher risk).
SCORE_COLUMNS: dict[str, str] = {
    **{f"risk_{h}y": f"risk_{h}y" for h in range(1, 6)},
    "p_fracture": "p_fracture",
    "frax_mof": "frax_mof",
    "frax_hip": "frax_hip",
    "l1_hu": "-l1_hu",
}


@dataclass(frozen=True)
class CohortFilter:
    """The global sidebar filters; an empty tuple or None means "no restriction".

    Attributes
    ----------
    model_id : str or None
        Model whose predictions are joined (None: no model columns, all NULL).
    sites, sexes : tuple of str
        Clinical ``site`` / ``sex`` values to keep.
    age : (float, float) or None
        Inclusive age range in years; patients without an age drop out when set.
    scan_dates : (date, date) or None
        Inclusive range of the index scan date.
    """

    model_id: str | None = None
    sites: tuple[str, ...] = ()
    sexes: tuple[str, ...] = ()
    age: tuple[float, float] | None = None
    scan_dates: tuple[dt.date, dt.date] | None = None


@dataclass(frozen=True)
class WorklistFilter:
    """The worklist's own criteria, on top of :class:`CohortFilter`.

    Attributes
    ----------
    horizon : int
        Years (1..5): the risk column ``risk_<horizon>y`` filtered and sorted on.
    min_risk : float
        Keep patients with that risk >= ``min_risk`` (probability 0..1).
    min_p_fracture : float or None
        Keep only a detected prevalent fracture: ``p_fracture >= min_p_fracture``.
    max_l1_hu : float or None
        Keep only L1 trabecular HU <= this (Pickhardt 2013: <= 160 HU 90 % sensitive for
        osteoporosis, <= 110 HU > 90 % specific).
    """

    horizon: int = 5
    min_risk: float = 0.0
    min_p_fracture: float | None = None
    max_l1_hu: float | None = None


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of each table the dashboard reads (-1 when the table does not exist)."""
    present = table_names(con)
    out = {}
    for t in (
        "instances", "unreadable", "series", "clinical", "clinical_links", "models",
        "predictions", "biomarkers", "evaluation", "failures", "runs", "audit",
    ):  # fmt: skip
        out[t] = int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) if t in present else -1
    return out


def filter_options(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """Choices of the sidebar: sites, sexes, age and scan date bounds, models.

    Returns
    -------
    dict
        ``sites``, ``sexes`` (sorted lists), ``age`` ((min, max) or None), ``scan_dates``
        ((min, max) dates or None), ``models`` (DataFrame ``model_id, name, n_predictions,
        last_scored``, newest first).
    """
    sites = [r[0] for r in con.execute("SELECT DISTINCT site FROM clinical ORDER BY 1").fetchall()]
    sexes = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT sex FROM clinical WHERE sex IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]
    age = con.execute("SELECT min(age), max(age) FROM clinical").fetchone()
    dates = con.execute(
        "SELECT least(c.a, l.a), greatest(c.b, l.b) FROM "
        "(SELECT min(scan_date) AS a, max(scan_date) AS b FROM clinical) c, "
        "(SELECT min(study_date) AS a, max(study_date) AS b FROM clinical_links "
        "WHERE status = 'linked') l"
    ).fetchone()
    models = con.execute(
        "SELECT m.model_id, m.name, p.n_predictions, p.last_scored FROM models m JOIN "
        "(SELECT model_id, count(*) AS n_predictions, max(scored_at) AS last_scored "
        "FROM predictions GROUP BY model_id) p USING (model_id) "
        "ORDER BY p.last_scored DESC NULLS LAST, m.model_id"
    ).df()
    return {
        "sites": sites,
        "sexes": sexes,
        "age": None if age[0] is None else (float(age[0]), float(age[1])),
        "scan_dates": None if dates[0] is None else (dates[0], dates[1]),
        "models": models,
    }


def _cohort(
    f: CohortFilter, *, biomarkers: bool = False, materialized: bool = False
) -> tuple[str, list[object]]:
    """``WITH cohort AS (...)`` of the filtered patients and its parameters.

    ``materialized`` computes the joins once for a query that reads the cohort repeatedly.
    """
    params: list[object] = [f.model_id]
    where = []
    if f.sites:
        where.append("list_contains(?::VARCHAR[], c.site)")
        params.append(list(f.sites))
    if f.sexes:
        where.append("list_contains(?::VARCHAR[], c.sex)")
        params.append(list(f.sexes))
    if f.age is not None:
        where.append("c.age BETWEEN ? AND ?")
        params += [float(f.age[0]), float(f.age[1])]
    if f.scan_dates is not None:
        where.append("coalesce(l.study_date, c.scan_date) BETWEEN ? AND ?")
        params += [f.scan_dates[0], f.scan_dates[1]]
    bio_cols, bio_join = "", ""
    if biomarkers:
        bio_cols = (
            ", b.series_l1_trabecular_hu AS l1_hu, b.series_l3_muscle_area_cm2 AS muscle_area, "
            "b.series_l3_muscle_hu AS muscle_hu"
        )
        bio_join = (
            "LEFT JOIN biomarkers b ON b.series_uid = l.series_uid AND b.level = 'L1' "
            f"AND b.preprocessing_version = {LATEST_BIOMARKERS} "
        )
    sql = (
        f"WITH cohort AS {'MATERIALIZED ' if materialized else ''}(SELECT c.patient_id, "
        "c.site, c.sex, c.age, c.bmi, c.prevalent_vf, "
        "c.frax_mof, c.frax_hip, c.followup_years, c.event_type, l.series_uid, "
        "coalesce(l.study_date, c.scan_date) AS scan_date, p.p_fracture, p.risk_1y, "
        "p.risk_2y, p.risk_3y, p.risk_4y, p.risk_5y, p.series_uid IS NOT NULL AS scored"
        f"{bio_cols} FROM clinical c "
        "LEFT JOIN clinical_links l ON l.patient_id = c.patient_id AND l.status = 'linked' "
        "LEFT JOIN predictions p ON p.series_uid = l.series_uid AND p.model_id = ? "
        f"{bio_join}" + (f"WHERE {' AND '.join(where)}" if where else "") + ") "
    )
    return sql, params


def cohort_size(con: duckdb.DuckDBPyConnection, f: CohortFilter) -> dict[str, int]:
    """Patients in the filtered cohort: ``patients``, ``scored`` (have a prediction)."""
    sql, params = _cohort(f)
    n, scored = con.execute(
        sql + "SELECT count(*), count(*) FILTER (WHERE scored) FROM cohort", params
    ).fetchone()
    return {"patients": int(n), "scored": int(scored)}


def funnel(con: duckdb.DuckDBPyConnection, f: CohortFilter) -> pd.DataFrame:
    """The cohort funnel per site: files -> series -> eligible -> selected -> scored etc.

    Files are the series' instances (``n_instances``) plus the unreadable files. Sites
    come from the clinical table; scans whose PatientID has no clinical row are the
    site ``(no clinical data)``, unreadable files (no series) the site ``(unreadable)``.
    Filters applied: sites and the scan date (of the series); sex and age describe
    patients, so they apply on the other pages.

    Returns
    -------
    pandas.DataFrame
        Columns ``site, files, series, eligible, selected, scored, failed, linked``, one row
        per site, ordered by site.
    """
    present = table_names(con)
    scored = "s.series_uid IN (SELECT series_uid FROM predictions WHERE model_id = ?)"
    params: list[object] = [f.model_id]
    failed = "false"
    if "failures" in present:
        failed = (
            f"s.series_uid IN (SELECT series_uid FROM failures WHERE model_id = ?) AND NOT {scored}"
        )
        params += [f.model_id, f.model_id]
    where = []
    if f.sites:
        where.append("list_contains(?::VARCHAR[], site)")
        params.append(list(f.sites))
    if f.scan_dates is not None:
        where.append("study_date BETWEEN ? AND ?")
        params += [f.scan_dates[0], f.scan_dates[1]]
    # semi-joins (IN) rather than outer joins: only whether a row exists matters
    sql = (
        "WITH s AS (SELECT s.series_uid, s.study_date, s.eligible, s.selected, "
        "coalesce(c.site, '(no clinical data)') AS site, coalesce(s.n_instances, 0) AS files, "
        f"s.selected AND {scored} AS scored, s.selected AND {failed} AS failed, "
        "s.series_uid IN (SELECT series_uid FROM clinical_links WHERE status = 'linked') "
        "AS linked FROM series s LEFT JOIN clinical c ON c.patient_id = s.patient_id) "
        "SELECT site, sum(files)::BIGINT AS files, count(*) AS series, "
        "count(*) FILTER (WHERE eligible) AS eligible, count(*) FILTER (WHERE selected) "
        "AS selected, count(*) FILTER (WHERE scored) AS scored, count(*) FILTER "
        "(WHERE failed) AS failed, count(*) FILTER (WHERE linked) AS linked FROM s "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + "GROUP BY site ORDER BY site"
    )
    out = con.execute(sql, params).df()
    if "unreadable" in present and (not f.sites or "(unreadable)" in f.sites) and not f.scan_dates:
        n = int(con.execute("SELECT count(*) FROM unreadable").fetchone()[0])
        if n:
            row = {c: 0 for c in out.columns} | {"site": "(unreadable)", "files": n}
            out = pd.concat([out, pd.DataFrame([row])], ignore_index=True)
    return out


def demographics(con: duckdb.DuckDBPyConnection, f: CohortFilter) -> pd.DataFrame:
    """Per site (and ``all``): patients, scored, women, age, BMI, prevalent and incident VF.

    Returns
    -------
    pandas.DataFrame
        ``site, patients, scored, female, age_mean, age_sd, bmi_mean, prevalent_vf,
        incident_vf, deaths, followup_median``; counts exact (suppression is the page's).
    """
    sql, params = _cohort(f)
    return con.execute(
        sql + "SELECT coalesce(site, 'all') AS site, count(*) AS patients, "
        "count(*) FILTER (WHERE scored) AS scored, count(*) FILTER (WHERE sex = 'F') AS female, "
        "avg(age) AS age_mean, stddev_samp(age) AS age_sd, avg(bmi) AS bmi_mean, "
        "count(*) FILTER (WHERE prevalent_vf = 1) AS prevalent_vf, "
        "count(*) FILTER (WHERE event_type = 1) AS incident_vf, "
        "count(*) FILTER (WHERE event_type = 2) AS deaths, "
        "median(followup_years) AS followup_median FROM cohort "
        "GROUP BY ROLLUP (site) ORDER BY site IS NULL, site",
        params,
    ).df()


def histograms(
    con: duckdb.DuckDBPyConnection, f: CohortFilter, specs: Sequence[tuple[str, float]]
) -> pd.DataFrame:
    """Counts of each ``(column, width)`` in bins of ``width`` per site, in one scan.

    Returns
    -------
    pandas.DataFrame
        ``measure, site, bin_start, n`` (``measure`` the column, ``bin_start`` the lower
        edge; missing values are not counted).
    """
    exprs = [(c, *HISTOGRAM_COLUMNS[c], float(w)) for c, w in specs]
    sql, params = _cohort(f, biomarkers=any(bio for _, _, bio, _ in exprs))
    cols = ", ".join(f"floor({e} / {w!r}) * {w!r} AS {c}" for c, e, _, w in exprs)
    unpivot = ", ".join(c for c, *_ in exprs)
    return con.execute(
        sql + f", b AS (SELECT site, {cols} FROM cohort) "
        f"SELECT name AS measure, site, value AS bin_start, count(*) AS n FROM "
        f"(UNPIVOT b ON {unpivot} INTO NAME name VALUE value) "
        "GROUP BY ALL ORDER BY measure, site, bin_start",
        params,
    ).df()


def survival_counts(
    con: duckdb.DuckDBPyConnection,
    f: CohortFilter,
    score: str,
    groups: int,
    by_site: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fractures and censorings per day of follow-up, per risk group (and site).

    Risk groups are quantile groups (``ntile``) of ``score`` within each site when
    ``by_site``, else over the pooled cohort; group 1 has the lowest risk. Deaths count
    as censored (cause-specific Kaplan-Meier).

    Returns
    -------
    counts : pandas.DataFrame
        ``site, grp, day, events, censored`` (site 'all' when pooled).
    groups : pandas.DataFrame
        ``site, grp, n, lo, hi``: size and score range of each group.
    """
    col = SCORE_COLUMNS[score]
    sql, params = _cohort(f, biomarkers=score == "l1_hu")
    part = "PARTITION BY site " if by_site else ""
    site = "site" if by_site else "'all'"
    g = (
        sql + f", g AS (SELECT {site} AS site, ntile(?) OVER ({part}ORDER BY {col}) AS grp, "
        f"{col} AS score, round(followup_years * {DAYS_PER_YEAR})::INTEGER AS day, "
        "event_type FROM cohort WHERE "
        f"{col} IS NOT NULL AND followup_years IS NOT NULL) "
    )
    counts = con.execute(
        g + "SELECT site, grp, day, count(*) FILTER (WHERE event_type = 1) AS events, "
        "count(*) FILTER (WHERE event_type <> 1) AS censored, min(score) AS lo, "
        "max(score) AS hi FROM g GROUP BY ALL ORDER BY site, grp, day",
        [*params, int(groups)],
    ).df()
    sizes = (
        counts.assign(n=counts["events"] + counts["censored"])
        .groupby(["site", "grp"], as_index=False)
        .agg(n=("n", "sum"), lo=("lo", "min"), hi=("hi", "max"))
    )
    return counts.drop(columns=["lo", "hi"]), sizes


def calibration_counts(
    con: duckdb.DuckDBPyConnection, f: CohortFilter, horizons: Sequence[int], bins: int = 10
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predicted risk by quantile bin per site and horizon, and the bins' follow-up counts.

    Bins are quantile groups (``ntile``) of ``risk_<h>y`` within each site, one set per
    horizon, all from one pass over the cohort.

    Returns
    -------
    bins : pandas.DataFrame
        ``horizon, site, bin, n, predicted`` (mean predicted ``risk_<h>y`` in the bin).
    counts : pandas.DataFrame
        ``horizon, site, bin, day, events, censored`` (deaths censored).
    """
    cols = [f"risk_{int(h)}y" for h in horizons]
    if not cols or any(c not in SCORE_COLUMNS for c in cols):
        raise ValueError(f"no risk column for horizons {horizons}")
    sql, params = _cohort(f)
    windows = ", ".join(
        f"ntile({int(bins)}) OVER (PARTITION BY site ORDER BY {c}) AS bin_{i}, {c} AS risk_{i}"
        for i, c in enumerate(cols)
    )
    g = (
        sql + f", g AS MATERIALIZED (SELECT site, {windows}, "
        f"round(followup_years * {DAYS_PER_YEAR})::INTEGER AS day, event_type FROM cohort "
        f"WHERE {cols[-1]} IS NOT NULL) "
    )
    parts = " UNION ALL ".join(
        f"SELECT {int(h)} AS horizon, site, bin_{i} AS bin, day, count(*) FILTER "
        "(WHERE event_type = 1) AS events, count(*) FILTER (WHERE event_type <> 1) AS "
        f"censored, sum(risk_{i}) AS risk_sum FROM g GROUP BY ALL"
        for i, h in enumerate(horizons)
    )
    counts = con.execute(
        g + f"SELECT * FROM ({parts}) ORDER BY horizon, site, bin, day", params
    ).df()
    b = (
        counts.assign(n=counts["events"] + counts["censored"])
        .groupby(["horizon", "site", "bin"], as_index=False)
        .agg(n=("n", "sum"), risk_sum=("risk_sum", "sum"))
    )
    b["predicted"] = b.pop("risk_sum") / b["n"]
    return b, counts.drop(columns=["risk_sum"])


#: ROC bins per score: SQL expression of the bin, higher = higher risk. Probabilities in
#: steps of 0.0025, FRAX (percent) in steps of 0.25 points, L1 HU in steps of 1 HU.
ROC_BINS: dict[str, str] = {
    **{f"risk_{h}y": f"floor(risk_{h}y * 400)" for h in range(1, 6)},
    "p_fracture": "floor(p_fracture * 400)",
    "frax_mof": "floor(frax_mof * 4)",
    "frax_hip": "floor(frax_hip * 4)",
    "l1_hu": "floor(-l1_hu)",
}


def roc_counts(
    con: duckdb.DuckDBPyConnection,
    f: CohortFilter,
    horizon: float,
    scores: Sequence[str],
) -> pd.DataFrame:
    """Cases and controls at ``horizon`` per score bin (:data:`ROC_BINS`), for ROC curves.

    Cases: fracture by ``horizon``; controls: followed beyond ``horizon`` without one
    (deaths and earlier censorings are neither; unweighted cumulative/dynamic
    definition). One pass over the cohort for all scores.

    Returns
    -------
    pandas.DataFrame
        ``score, site, bin, cases, controls``; higher bin = higher risk.
    """
    sql, params = _cohort(f, biomarkers="l1_hu" in scores)
    bins = ", ".join(f"{ROC_BINS[s]} AS {s}" for s in scores)
    return con.execute(
        sql + f", x AS (SELECT site, (event_type = 1 AND followup_years <= ?) AS is_case, "
        f"{bins} FROM cohort WHERE (event_type = 1 AND followup_years <= ?) "
        "OR followup_years > ?) "
        f"SELECT score, site, bin, count(*) FILTER (WHERE is_case) AS cases, "
        "count(*) FILTER (WHERE NOT is_case) AS controls FROM "
        f"(UNPIVOT x ON {', '.join(scores)} INTO NAME score VALUE bin) "
        "GROUP BY ALL ORDER BY score, site, bin",
        [*params, float(horizon), float(horizon), float(horizon)],
    ).df()


def decision_sample(
    con: duckdb.DuckDBPyConnection, f: CohortFilter, horizon: int, limit: int, seed: int
) -> tuple[pd.DataFrame, int]:
    """A reproducible random sample of at most ``limit`` scored patients for a decision curve.

    Returns
    -------
    sample : pandas.DataFrame
        ``followup_years, event_type, risk, frax_mof`` (risk = ``risk_<horizon>y``).
    n : int
        Scored patients in the filtered cohort (the sample's population).
    """
    col = f"risk_{int(horizon)}y"
    if col not in SCORE_COLUMNS:
        raise ValueError(f"no risk column for horizon {horizon}")
    sql, params = _cohort(f)
    sample = con.execute(
        sql + f"SELECT followup_years, event_type, {col} AS risk, frax_mof, "
        "count(*) OVER () AS n_all FROM cohort "
        f"WHERE {col} IS NOT NULL ORDER BY hash(patient_id, ?) LIMIT ?",
        [*params, int(seed), int(limit)],
    ).df()
    n = int(sample["n_all"].iloc[0]) if len(sample) else 0
    return sample.drop(columns=["n_all"]), n


def evaluation_rows(
    con: duckdb.DuckDBPyConnection,
    model_ids: Sequence[str | None],
    sites: Sequence[str],
    subgroup: str,
    metrics: Sequence[str],
) -> pd.DataFrame:
    """Stored rows of ``evaluation_latest`` (the newest ``vfrisk report`` run per model).

    Parameters
    ----------
    model_ids : sequence of str or None
        Models (None = the FRAX-only report); empty = every model.
    sites : sequence of str
        Sites, 'all' for pooled; empty = every site.
    subgroup : str
        'all', 'sex=F', 'age=70-79', ...
    metrics : sequence of str
        Metric names, SQL ``LIKE`` patterns allowed ('delta_%').

    Returns
    -------
    pandas.DataFrame
        The evaluation columns plus ``computed_at``.
    """
    if "evaluation_latest" not in table_names(con):
        return pd.DataFrame()
    where, params = ["subgroup = ?"], [subgroup]
    if model_ids:
        keys = [m or "" for m in model_ids]
        where.append("list_contains(?::VARCHAR[], coalesce(model_id, ''))")
        params.append(keys)
    if sites:
        where.append("list_contains(?::VARCHAR[], site)")
        params.append(list(sites))
    like = " OR ".join("metric LIKE ?" for _ in metrics) or "true"
    params += list(metrics)
    return con.execute(
        "SELECT model_id, score, site, subgroup, horizon, metric, estimate, ci_low, ci_high, "
        f"p_value, n, events, method, computed_at FROM evaluation_latest WHERE "
        f"{' AND '.join(where)} AND ({like}) ORDER BY model_id, site, score, metric, horizon",
        params,
    ).df()


def _worklist_where(w: WorklistFilter) -> tuple[str, list[object]]:
    col = f"risk_{int(w.horizon)}y"
    if col not in SCORE_COLUMNS:
        raise ValueError(f"no risk column for horizon {w.horizon}")
    where, params = [f"{col} >= ?"], [float(w.min_risk)]
    if w.min_p_fracture is not None:
        where.append("p_fracture >= ?")
        params.append(float(w.min_p_fracture))
    if w.max_l1_hu is not None:
        where.append("l1_hu <= ?")
        params.append(float(w.max_l1_hu))
    return " AND ".join(where), params


def worklist(
    con: duckdb.DuckDBPyConnection,
    f: CohortFilter,
    w: WorklistFilter,
    limit: int,
) -> tuple[pd.DataFrame, int]:
    """Patients meeting the worklist criteria, highest risk first.

    Returns
    -------
    rows : pandas.DataFrame
        At most ``limit`` rows: ``patient_id, series_uid, site, sex, age, scan_date,
        p_fracture, risk_1y .. risk_5y, l1_hu, muscle_area, muscle_hu, frax_mof``.
    total : int
        Patients matching (the table may show fewer).
    """
    sql, params = _cohort(f, biomarkers=True)
    where, wparams = _worklist_where(w)
    col = f"risk_{int(w.horizon)}y"
    rows = con.execute(
        sql + "SELECT patient_id, series_uid, site, sex, age, scan_date, p_fracture, risk_1y, "
        "risk_2y, risk_3y, risk_4y, risk_5y, l1_hu, muscle_area, muscle_hu, frax_mof, "
        f"count(*) OVER () AS total FROM cohort WHERE {where} "
        f"ORDER BY {col} DESC, patient_id LIMIT ?",
        [*params, *wparams, int(limit)],
    ).df()
    total = int(rows["total"].iloc[0]) if len(rows) else 0
    return rows.drop(columns=["total"]), total


def patient_detail(
    con: duckdb.DuckDBPyConnection, series_uid: str, model_id: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One scan's prediction and its per-level biomarkers.

    Returns
    -------
    prediction : pandas.DataFrame
        Zero or one row: ``p_fracture, risk_1y .. risk_5y, model_id, scored_at``.
    levels : pandas.DataFrame
        One row per level (T12..L4 order) of the preprocessing version measured last.
    """
    pred = con.execute(
        "SELECT p_fracture, risk_1y, risk_2y, risk_3y, risk_4y, risk_5y, model_id, scored_at "
        "FROM predictions WHERE series_uid = ? AND model_id = ?",
        [series_uid, model_id],
    ).df()
    levels = con.execute(
        "SELECT level, present, trabecular_hu, genant_grade, shape, height_anterior_mm, "
        "height_middle_mm, height_posterior_mm, psoas_area_cm2, paraspinal_area_cm2, "
        "muscle_hu, canal_hu, flags, preprocessing_version FROM biomarkers WHERE series_uid = ? "
        "QUALIFY preprocessing_version = arg_max(preprocessing_version, measured_at) OVER () "
        "ORDER BY list_position(['T12', 'L1', 'L2', 'L3', 'L4'], level)",
        [series_uid],
    ).df()
    return pred, levels


def model_card(con: duckdb.DuckDBPyConnection, model_id: str) -> dict[str, Any] | None:
    """The model card ``vfrisk score`` stored with a model (None: none was beside it)."""
    row = con.execute("SELECT card FROM models WHERE model_id = ?", [model_id]).fetchone()
    if row is None or row[0] is None:
        return None
    card = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return card if isinstance(card, dict) else None


def qa_png(con: duckdb.DuckDBPyConnection, series_uid: str) -> str | None:
    """The QA picture path ``vfrisk score`` recorded for a series (None when none)."""
    if "series_qa" not in table_names(con):
        return None
    row = con.execute(
        "SELECT qa_png FROM series_qa WHERE series_uid = ? AND qa_png IS NOT NULL "
        "ORDER BY prepared_at DESC NULLS LAST LIMIT 1",
        [series_uid],
    ).fetchone()
    return None if row is None else str(row[0])


def data_quality(con: duckdb.DuckDBPyConnection, f: CohortFilter) -> dict[str, pd.DataFrame]:
    """Counts per site of exclusion reasons, unreadable files, failures and QA flags.

    Returns
    -------
    dict of DataFrame
        ``exclusions`` (``site, reason_code, series``: series not selected, by reason),
        ``unreadable`` (``reason_code, files``), ``failures`` (``site, stage,
        reason_code, series``; empty without a ``failures`` table) and ``qa_flags``
        (``site, flag, series``: the QA flags of ``series_qa``, one count per series and
        flag; empty without that table) and ``hu_reference`` (``site, scanner, series,
        levels_read, offset_hu``: per site and scanner (manufacturer and model), the
        median over its levels of the spinal canal's HU minus the cohort's median at that
        level (``biomarkers.canal_hu``, of :data:`LATEST_BIOMARKERS`): a scanner whose
        canal reads off the rest reads bone and muscle off by as much).
    """
    present = table_names(con)
    site_where, params = "", []
    if f.sites:
        site_where = "WHERE list_contains(?::VARCHAR[], site) "
        params = [list(f.sites)]
    series_site = (
        "(SELECT s.*, coalesce(c.site, '(no clinical data)') AS site FROM series s "
        "LEFT JOIN clinical c ON c.patient_id = s.patient_id)"
    )
    out = {
        "exclusions": con.execute(
            f"SELECT site, reason_code, count(*) AS series FROM {series_site} "
            f"{site_where}{'AND' if site_where else 'WHERE'} NOT selected "
            "GROUP BY ALL ORDER BY site, series DESC",
            params,
        ).df(),
        "unreadable": con.execute(
            "SELECT reason_code, count(*) AS files FROM unreadable GROUP BY ALL ORDER BY files DESC"
        ).df(),
    }
    if "failures" in present:
        by_model = f.model_id is not None
        out["failures"] = con.execute(
            "SELECT site, stage, reason_code, count(DISTINCT series_uid) AS series FROM "
            "(SELECT fl.*, coalesce(c.site, '(no clinical data)') AS site FROM failures fl "
            "LEFT JOIN series s USING (series_uid) LEFT JOIN clinical c "
            "ON c.patient_id = s.patient_id"
            + (" WHERE fl.model_id = ?" if by_model else "")
            + f") {site_where}GROUP BY ALL ORDER BY site, series DESC",
            ([f.model_id] if by_model else []) + params,
        ).df()
    else:
        out["failures"] = pd.DataFrame(columns=["site", "stage", "reason_code", "series"])
    if "series_qa" in present:
        out["qa_flags"] = con.execute(
            "SELECT site, flag, count(DISTINCT series_uid) AS series FROM (SELECT q.series_uid, "
            "coalesce(c.site, '(no clinical data)') AS site, unnest(string_split(q.qa_flags, "
            "',')) AS flag FROM series_qa q LEFT JOIN series s USING (series_uid) "
            "LEFT JOIN clinical c ON c.patient_id = s.patient_id WHERE q.qa_flags <> '') "
            f"{site_where}GROUP BY ALL ORDER BY site, series DESC",
            params,
        ).df()
    else:
        out["qa_flags"] = pd.DataFrame(columns=["site", "flag", "series"])
    out["hu_reference"] = con.execute(
        "WITH b AS (SELECT b.series_uid, b.level, b.canal_hu, coalesce(c.site, "
        "'(no clinical data)') AS site, trim(coalesce(s.manufacturer, '?') || ' ' || "
        "coalesce(s.model, '')) AS scanner FROM biomarkers b JOIN series s USING "
        "(series_uid) LEFT JOIN clinical c ON c.patient_id = s.patient_id WHERE b.present "
        f"AND b.preprocessing_version = {LATEST_BIOMARKERS}), "
        "ref AS (SELECT level, median(canal_hu) AS cohort_hu FROM b GROUP BY level) "
        "SELECT site, scanner, count(DISTINCT series_uid) AS series, count(canal_hu) AS "
        "levels_read, median(canal_hu - cohort_hu) AS offset_hu FROM b JOIN ref USING (level) "
        f"{site_where}GROUP BY ALL ORDER BY site, scanner",
        params,
    ).df()
    return out


def recent_runs(con: duckdb.DuckDBPyConnection, limit: int = 50) -> pd.DataFrame:
    """The newest ``limit`` rows of ``runs`` (what wrote the database, with its counts)."""
    return con.execute(
        "SELECT run_id, command, status, started_at, finished_at, code_version, model_id, "
        "counts::VARCHAR AS counts FROM runs ORDER BY started_at DESC NULLS LAST LIMIT ?",
        [int(limit)],
    ).df()


def insert_audit(
    con: duckdb.DuckDBPyConnection,
    *,
    action: str,
    who: str,
    filters: dict[str, object],
    rows: int,
    at: dt.datetime | None = None,
) -> str:
    """Record one worklist export (or identifier display) in ``audit``; return its id."""
    import uuid

    export_id = uuid.uuid4().hex[:16]
    con.execute(
        "INSERT INTO audit (export_id, action, who, exported_at, filters, n_rows) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            export_id,
            action,
            who,
            at or dt.datetime.now(dt.UTC).replace(tzinfo=None),
            json.dumps(filters, default=str, sort_keys=True),
            int(rows),
        ],
    )
    return export_id


def read_audit(con: duckdb.DuckDBPyConnection, limit: int = 100) -> pd.DataFrame:
    """The newest ``limit`` audit rows (empty when the table does not exist yet)."""
    if "audit" not in table_names(con):
        return pd.DataFrame(
            columns=["export_id", "action", "who", "exported_at", "filters", "n_rows"]
        )
    return con.execute(
        "SELECT export_id, action, who, exported_at, filters::VARCHAR AS filters, n_rows "
        "FROM audit ORDER BY exported_at DESC LIMIT ?",
        [int(limit)],
    ).df()
