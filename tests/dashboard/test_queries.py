"""The dashboard's SQL (engine.store.dashboard_tables) against independent SQL counts."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from engine.store import Store
from engine.store import dashboard_tables as t
from engine.store.dashboard_tables import CohortFilter, WorklistFilter


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> int:
    return int(con.execute(sql, params or []).fetchone()[0])


@pytest.fixture
def con(scored_db):  # noqa: ANN001, ANN201
    with Store(scored_db.db).read() as c:
        yield c


def test_funnel_against_sql(con, scored_db) -> None:
    f = CohortFilter(model_id=scored_db.model_id)
    funnel = t.funnel(con, f)
    assert int(funnel["series"].sum()) == _one(con, "SELECT count(*) FROM series")
    assert int(funnel["eligible"].sum()) == _one(con, "SELECT count(*) FROM series WHERE eligible")
    assert int(funnel["selected"].sum()) == _one(con, "SELECT count(*) FROM series WHERE selected")
    assert int(funnel["scored"].sum()) == _one(
        con, "SELECT count(*) FROM predictions WHERE model_id = ?", [scored_db.model_id]
    )
    # the scout that failed is not a selected series, so it is no funnel failure
    assert _one(con, "SELECT count(*) FROM failures") == 1
    assert int(funnel["failed"].sum()) == 0
    files = _one(con, "SELECT count(*) FROM instances") + _one(
        con, "SELECT count(*) FROM unreadable"
    )
    assert int(funnel["files"].sum()) == files
    assert int(funnel["linked"].sum()) == _one(
        con, "SELECT count(*) FROM clinical_links WHERE status = 'linked'"
    )
    site = con.execute("SELECT min(site) FROM clinical").fetchone()[0]
    one = t.funnel(con, CohortFilter(model_id=scored_db.model_id, sites=(site,)))
    assert one["site"].tolist() == [site]
    assert int(one["series"].sum()) == _one(
        con,
        "SELECT count(*) FROM series s JOIN clinical c USING (patient_id) WHERE c.site = ?",
        [site],
    )


@pytest.mark.parametrize("sexes", [(), ("F",), ("M",)])
def test_demographics_against_sql(con, scored_db, sexes) -> None:
    f = CohortFilter(model_id=scored_db.model_id, sexes=sexes)
    demo = t.demographics(con, f)
    where = "WHERE sex IN ('F', 'M')" if not sexes else f"WHERE sex = '{sexes[0]}'"
    total = _one(con, f"SELECT count(*) FROM clinical {where}")
    assert int(demo.loc[demo["site"] == "all", "patients"].iloc[0] if total else 0) == total
    for row in demo[demo["site"] != "all"].itertuples():
        assert row.patients == _one(
            con, f"SELECT count(*) FROM clinical {where} AND site = ?", [row.site]
        )
        assert row.incident_vf == _one(
            con,
            f"SELECT count(*) FROM clinical {where} AND site = ? AND event_type = 1",
            [row.site],
        )
    scored = _one(
        con,
        "SELECT count(*) FROM clinical c JOIN clinical_links l ON l.patient_id = c.patient_id "
        "AND l.status = 'linked' JOIN predictions p ON p.series_uid = l.series_uid "
        f"AND p.model_id = ? {where.replace('sex', 'c.sex')}",
        [scored_db.model_id],
    )
    assert int(demo["scored"].iloc[-1] if len(demo) else 0) == scored


def test_age_and_date_filters_against_sql(con, scored_db) -> None:
    ages = [r[0] for r in con.execute("SELECT age FROM clinical ORDER BY age").fetchall()]
    f = CohortFilter(model_id=scored_db.model_id, age=(ages[0], ages[1]))
    assert t.cohort_size(con, f)["patients"] == 2
    d = con.execute(
        "SELECT min(study_date) FROM clinical_links WHERE status = 'linked'"
    ).fetchone()[0]
    f = CohortFilter(model_id=scored_db.model_id, scan_dates=(d, d))
    assert t.cohort_size(con, f)["patients"] == _one(
        con, "SELECT count(*) FROM clinical_links WHERE status = 'linked' AND study_date = ?", [d]
    )
    empty = CohortFilter(scan_dates=(dt.date(1900, 1, 1), dt.date(1900, 1, 2)))
    assert t.cohort_size(con, empty)["patients"] == 0


def test_histograms_count_every_scored_patient(con, scored_db) -> None:
    f = CohortFilter(model_id=scored_db.model_id)
    h = t.histograms(con, f, (("risk_5y", 0.02), ("l1_hu", 10.0), ("age", 5.0)))
    risk = h[h["measure"] == "risk_5y"]
    assert int(risk["n"].sum()) == t.cohort_size(con, f)["scored"] > 0
    assert (risk["bin_start"] >= 0).all()
    hu = h[h["measure"] == "l1_hu"]
    assert int(hu["n"].sum()) == _one(
        con,
        "SELECT count(*) FROM clinical_links l JOIN biomarkers b USING (series_uid) "
        "WHERE l.status = 'linked' AND b.level = 'L1' AND b.series_l1_trabecular_hu IS NOT NULL",
    )
    ages = h[h["measure"] == "age"]
    assert int(ages["n"].sum()) == _one(con, "SELECT count(age) FROM clinical")
    for row in ages.itertuples():  # each patient in its bin [start, start + 5)
        assert row.n == _one(
            con, "SELECT count(*) FROM clinical WHERE age >= ? AND age < ? AND site = ?",
            [row.bin_start, row.bin_start + 5, row.site],
        )  # fmt: skip


def test_user_input_is_bound_never_spliced(con, scored_db) -> None:
    evil = ("x' OR 1=1 --",)
    assert t.cohort_size(con, CohortFilter(model_id="' OR 1=1 --", sites=evil))["patients"] == 0
    with pytest.raises(KeyError):
        t.histograms(con, CohortFilter(), (("age; DROP TABLE clinical", 1.0),))


def test_survival_counts_add_up(con, scored_db) -> None:
    f = CohortFilter(model_id=scored_db.model_id)
    counts, sizes = t.survival_counts(con, f, "risk_5y", 2, False)
    n = t.cohort_size(con, f)["scored"]
    assert int(sizes["n"].sum()) == n == int(counts["events"].sum() + counts["censored"].sum())
    assert int(counts["events"].sum()) == _one(
        con,
        "SELECT count(*) FROM clinical c JOIN clinical_links l ON l.patient_id = c.patient_id "
        "AND l.status = 'linked' JOIN predictions p USING (series_uid) WHERE c.event_type = 1",
    )
    # groups are ordered by risk: every score of group 1 <= every score of group 2
    assert sizes["hi"].iloc[0] <= sizes["lo"].iloc[1]


def test_worklist_against_sql(con, scored_db) -> None:
    f = CohortFilter(model_id=scored_db.model_id)
    cut = float(con.execute("SELECT median(risk_5y) FROM predictions").fetchone()[0])
    rows, total = t.worklist(con, f, WorklistFilter(horizon=5, min_risk=cut), 10)
    assert total == _one(con, "SELECT count(*) FROM predictions WHERE risk_5y >= ?", [cut])
    assert rows["risk_5y"].is_monotonic_decreasing
    rows, total = t.worklist(con, f, WorklistFilter(horizon=2, min_risk=0.0, max_l1_hu=-1e9), 10)
    assert total == 0 and rows.empty


def test_pages_show_the_biomarkers_measured_last(scored_db, tmp_path) -> None:
    import shutil

    db = tmp_path / "versions.duckdb"
    shutil.copy(scored_db.db, db)
    store = Store(db)
    with store.write() as con:
        (version,) = con.execute("SELECT DISTINCT preprocessing_version FROM biomarkers").fetchone()
        # a newer "pp100" (measured a day later, L1 +1000 HU) and an older "pp99": by name,
        # max() would pick pp99
        assert version not in ("pp100", "pp99")
        for name, days, shift in (("pp100", 1, 1000.0), ("pp99", -1, -1000.0)):
            con.execute(
                f"INSERT INTO biomarkers SELECT * REPLACE ('{name}' AS preprocessing_version, "
                f"measured_at + INTERVAL ({days}) DAY AS measured_at, "
                f"series_l1_trabecular_hu + {shift} AS series_l1_trabecular_hu) "
                "FROM biomarkers WHERE preprocessing_version = ?",
                [version],
            )
    with store.read() as con:
        f = CohortFilter(model_id=scored_db.model_id)
        rows, _ = t.worklist(con, f, WorklistFilter(horizon=5, min_risk=0.0), 100)
        l1 = con.execute(
            "SELECT series_uid, series_l1_trabecular_hu AS hu FROM biomarkers "
            "WHERE level = 'L1' AND preprocessing_version = 'pp100'"
        ).df()
        got = rows.merge(l1, on="series_uid")
        assert len(got) == len(rows) > 0 and got["l1_hu"].dropna().gt(900).all()
        assert np.allclose(got["l1_hu"], got["hu"], equal_nan=True)
        uid = rows["series_uid"].iloc[0]
        _, levels = t.patient_detail(con, uid, scored_db.model_id)
        assert list(levels["preprocessing_version"].unique()) == ["pp100"] and len(levels) == 5
        assert len(t.data_quality(con, f)["hu_reference"]) > 0


def test_data_quality_against_sql(con, scored_db) -> None:
    dq = t.data_quality(con, CohortFilter(model_id=scored_db.model_id))
    assert int(dq["exclusions"]["series"].sum()) == _one(
        con, "SELECT count(*) FROM series WHERE NOT selected"
    )
    by_reason = dict(
        con.execute(
            "SELECT reason_code, count(*) FROM series WHERE NOT selected GROUP BY ALL"
        ).fetchall()
    )
    got = dq["exclusions"].groupby("reason_code")["series"].sum().to_dict()
    assert got == by_reason
    assert int(dq["failures"]["series"].sum()) == _one(con, "SELECT count(*) FROM failures")
    assert int(dq["unreadable"]["files"].sum() if len(dq["unreadable"]) else 0) == _one(
        con, "SELECT count(*) FROM unreadable"
    )


def test_hu_reference_against_pandas(con, scored_db) -> None:
    got = t.data_quality(con, CohortFilter(model_id=scored_db.model_id))["hu_reference"]
    b = con.execute(
        "SELECT b.series_uid, b.level, b.canal_hu, c.site, s.manufacturer, s.model "
        "FROM biomarkers b JOIN series s USING (series_uid) JOIN clinical c USING (patient_id) "
        "WHERE b.present"
    ).df()
    assert b["canal_hu"].notna().mean() > 0.8  # the scans' canals were read
    b["scanner"] = (b["manufacturer"].fillna("?") + " " + b["model"].fillna("")).str.strip()
    b["diff"] = b["canal_hu"] - b.groupby("level")["canal_hu"].transform("median")
    expected = b.groupby(["site", "scanner"]).agg(
        series=("series_uid", "nunique"), levels_read=("canal_hu", "count"),
        offset_hu=("diff", "median"),
    ).reset_index()  # fmt: skip
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected, check_dtype=False, check_exact=False
    )


def test_evaluation_rows_are_the_latest_report(con, scored_db) -> None:
    rows = t.evaluation_rows(con, (scored_db.model_id,), (), "all", ("patients",))
    assert len(rows)
    pooled = rows[(rows["site"] == "all") & (rows["score"] == "cohort")]
    assert int(pooled["estimate"].iloc[0]) == _one(
        con, "SELECT count(*) FROM clinical_links WHERE status = 'linked'"
    )


def test_audit_round_trip(scored_db, tmp_path) -> None:
    import shutil

    db = tmp_path / "copy.duckdb"
    shutil.copy(scored_db.db, db)
    with Store(db).write() as c:
        t.insert_audit(c, action="export_worklist", who="tester", filters={"a": 1}, rows=3)
    with Store(db).read() as c:
        audit = t.read_audit(c)
    audit = audit[audit["who"] == "tester"]  # the session's database may hold other rows
    assert len(audit) == 1
    assert int(audit["n_rows"].iloc[0]) == 3
    assert json.loads(audit["filters"].iloc[0]) == {"a": 1}


def test_calibration_bins_against_sql(con, scored_db) -> None:
    f = CohortFilter(model_id=scored_db.model_id)
    bins, counts = t.calibration_counts(con, f, (2, 5), 2)
    n = t.cohort_size(con, f)["scored"]
    for h in (2, 5):
        b = bins[bins["horizon"] == h]
        assert int(b["n"].sum()) == n
        c = counts[counts["horizon"] == h]
        assert int(c["events"].sum() + c["censored"].sum()) == n
        mean = con.execute(f"SELECT avg(risk_{h}y) FROM predictions").fetchone()[0]
        assert (b["predicted"] * b["n"]).sum() / n == pytest.approx(mean)


def test_decision_sample_is_reproducible_and_bounded(con, scored_db) -> None:
    f = CohortFilter(model_id=scored_db.model_id)
    a, n = t.decision_sample(con, f, 5, 2, 0)
    b, _ = t.decision_sample(con, f, 5, 2, 0)
    assert n == t.cohort_size(con, f)["scored"] and len(a) == 2
    assert a.equals(b)


def test_roc_counts_against_sql(con, scored_db) -> None:
    f = CohortFilter(model_id=scored_db.model_id)
    h = 5.0
    r = t.roc_counts(con, f, h, ("risk_5y", "frax_mof", "l1_hu"))
    joined = (
        "FROM clinical c JOIN clinical_links l ON l.patient_id = c.patient_id AND "
        "l.status = 'linked' JOIN predictions p USING (series_uid) "
    )
    cases = _one(con, f"SELECT count(*) {joined} WHERE event_type = 1 AND followup_years <= ?", [h])
    controls = _one(con, f"SELECT count(*) {joined} WHERE followup_years > ?", [h])
    risk = r[r["score"] == "risk_5y"]
    assert int(risk["cases"].sum()) == cases and int(risk["controls"].sum()) == controls
    # higher bin = higher risk: the bin of the highest 5-year risk is the largest
    top = float(con.execute("SELECT max(risk_5y) FROM predictions").fetchone()[0])
    assert risk["bin"].max() == np.floor(top * 400)
