"""Dashboard speed: server-side time of each page's first render and of a filter change.

    python bench/dashboard_speed.py [--sizes 10000,100000,1000000] [--work DIR]

For each size N it builds a rows-only database of N scored patients (no images) and runs
every page in-process with Streamlit's AppTest (the server side of a page view, without a
browser): first with an empty cache (first render), then after changing the sex filter
(a filter change). Goal (issue 8): <= 2 s each at 1,000,000 patients on 2 cores. The
baseline measured in the same run is one full load of the joined cohort (clinical + link
+ prediction, 12 columns) into pandas, what a naive dashboard would do per view; each
page time is also given as a ratio of it, and the growth from the smallest to the
largest size is printed.

BENCH FIXTURE, NOT RESULTS: the clinical table comes from ``vfrisk synth --tables-only``;
series, links, predictions and biomarkers are written straight from its truth table
(``risk_<t>y`` = the generator's ``oracle_image`` risk, ``p_fracture`` from the true
prevalent grade, biomarkers from the true HU and muscle, the canal at its phantom value
plus the site's HU offset), so the figures look plausible.
The numbers on these pages mean nothing about any model; only the timings matter here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "dashboard" / "app.py"
PAGES = ("overview", "survival", "calibration", "comparison", "worklist", "data_quality")
LEVELS = ("T12", "L1", "L2", "L3", "L4")


def build_db(n: int, work: Path) -> Path:
    """The bench database of ``n`` patients in ``work`` (reused when present)."""
    from engine.store import Store

    cohort = work / f"cohort_{n}"
    db = work / f"bench_{n}.duckdb"
    if db.exists():
        return db
    if not (cohort / "truth" / "patients.csv").exists():
        subprocess.run(
            [sys.executable, "-m", "engine.cli", "synth", str(cohort), "--patients", str(n),
             "--tables-only", "--sites", "dev:0.5,ext_a:0.25,ext_b:0.25", "--seed", "2026"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    truth = str(cohort / "truth" / "patients.csv")
    tmp = db.with_name(db.name + ".tmp")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    store = Store(tmp)
    with store.write() as con:
        con.execute(f"CREATE TEMP TABLE t AS SELECT * FROM read_csv_auto('{truth}')")
        con.execute(
            "INSERT INTO clinical SELECT patient_id, site, sex, age, height_cm, weight_kg, bmi, "
            "prior_fracture, parent_hip_fracture, current_smoking, glucocorticoids, "
            "rheumatoid_arthritis, secondary_osteoporosis, alcohol_3plus, prevalent_vf, "
            "frax_mof, frax_hip, scan_date, followup_years, incident_vf, event_type, NULL, "
            "'bench', row_number() OVER (), now(), 'bench' FROM t"
        )
        con.execute(
            "INSERT INTO series (series_uid, study_uid, patient_id, study_date, modality, "
            "eligible, selected, content_hash) SELECT 'S.' || patient_id, 'T.' || patient_id, "
            "patient_id, scan_date, 'CT', true, true, md5(patient_id) FROM t"
        )
        con.execute(
            "INSERT INTO clinical_links SELECT patient_id, 'S.' || patient_id, "
            "'T.' || patient_id, scan_date, 1, scan_date, 0, false, 'linked', now(), 'bench' "
            "FROM t"
        )
        con.execute(
            "INSERT INTO models VALUES ('bench0000000', 'BENCH FIXTURE (oracle risks, not a "
            "model)', '', '', 'bench', NULL, now())"
        )
        con.execute(
            "INSERT INTO predictions SELECT 'S.' || patient_id, patient_id, 'bench0000000', "
            "CASE WHEN greatest(grade_T12, grade_L1, grade_L2, grade_L3, grade_L4) > 0 "
            "THEN 0.8 ELSE 0.1 END, oracle_image_1y, oracle_image_2y, oracle_image_3y, "
            "oracle_image_4y, oracle_image_5y, md5(patient_id), 'bench', now() FROM t"
        )
        for level in LEVELS:
            con.execute(
                "INSERT INTO biomarkers (series_uid, level, preprocessing_version, present, "
                "trabecular_hu, genant_grade, psoas_area_cm2, paraspinal_area_cm2, "
                "muscle_area_cm2, muscle_hu, canal_hu, flags, series_l1_trabecular_hu, "
                "series_l3_muscle_area_cm2, series_l3_muscle_hu, series_flags) "
                f"SELECT 'S.' || patient_id, '{level}', 'bench', true, hu_{level}, "
                f"grade_{level}, psoas_area_cm2, paraspinal_area_cm2, "
                "psoas_area_cm2 + paraspinal_area_cm2, (psoas_hu + paraspinal_hu) / 2, "
                # the canal's reading: cord at T12-L1, fluid below, the site's HU offset
                f"{24.0 if level in ('T12', 'L1') else 16.0} + CASE site WHEN 'ext_a' THEN 6.0 "
                "WHEN 'ext_b' THEN -8.0 ELSE 0.0 END, '', "
                "hu_L1, psoas_area_cm2 + paraspinal_area_cm2, (psoas_hu + paraspinal_hu) / 2, "
                "CASE WHEN contrast THEN 'contrast' ELSE '' END FROM t"
            )
    env = dict(os.environ, VFRISK_CONFIG="")
    env.pop("VFRISK_CONFIG")
    subprocess.run(
        [sys.executable, "-m", "engine.cli", "--log-file", str(work / "bench.log.jsonl"),
         "report", "--db", str(tmp)],
        check=True, stdout=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    tmp.rename(db)
    for suffix in (".lock", ".intent", ".waiting"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    return db


def baseline_full_load(db: Path) -> float:
    """Seconds to load the joined cohort into pandas (the naive way; best of 2)."""
    from engine.store import Store

    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        with Store(db).read() as con:
            con.execute(
                "SELECT c.patient_id, c.site, c.sex, c.age, c.followup_years, c.event_type, "
                "c.frax_mof, p.p_fracture, p.risk_2y, p.risk_3y, p.risk_5y, l.study_date "
                "FROM clinical c JOIN clinical_links l USING (patient_id) "
                "JOIN predictions p USING (series_uid)"
            ).df()
        best = min(best, time.perf_counter() - t0)
    return best


def time_page(db: Path, page: str) -> tuple[float, float]:
    """(first render, filter change) seconds of one page, server side."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["VFRISK_DASHBOARD_DB"] = str(db)
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=600)
    path = str(APP.parent / "pages" / f"{page}.py")
    at.run()  # registers the pages (runs the default page once; its time is not counted)
    st.cache_data.clear()
    at.switch_page(path)
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"{page}: {at.exception}")
    at.multiselect(key="f_sex").set_value(["F"])
    t0 = time.perf_counter()
    at.run()
    change = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"{page} after the filter: {at.exception}")
    return first, change


def main() -> None:
    """Build each size, time every page, print the table and the growth."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vfrisk-dashboard-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.pop("VFRISK_CONFIG", None)
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict[str, tuple[float, float]]] = {}
    for n in sizes:
        t0 = time.perf_counter()
        db = build_db(n, args.work)
        print(f"# {n:,} patients: database ready in {time.perf_counter() - t0:.1f} s ({db})")
        base = baseline_full_load(db)
        results[n] = {p: time_page(db, p) for p in PAGES}
        print(f"baseline full pandas load of the cohort: {base:.2f} s")
        print(f"{'page':<14}{'first s':>9}{'filter s':>10}{'first/base':>12}{'goal':>7}")
        for p, (first, change) in results[n].items():
            ok = "met" if max(first, change) <= 2.0 else "MISSED"
            print(f"{p:<14}{first:>9.2f}{change:>10.2f}{first / base:>12.2f}{ok:>7}")
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        print(f"# growth {lo:,} -> {hi:,} patients ({hi / lo:.0f}x rows)")
        for p in PAGES:
            f0, c0 = results[lo][p]
            f1, c1 = results[hi][p]
            print(f"{p:<14} first x{f1 / f0:.1f}  filter x{c1 / c0:.1f}")


if __name__ == "__main__":
    main()
