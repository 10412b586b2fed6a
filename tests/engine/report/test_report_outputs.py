"""`vfrisk report` outputs: formats, the evaluation table, FRAX-only, L1 HU, bad input, CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from engine import evaluation as ev
from engine.errors import VfriskError
from engine.report import build_report, check_output, write
from engine.report.document import build_document
from engine.report.render import to_markdown
from engine.store import Store

CONFTEST = Path(__file__).with_name("conftest.py")


def _helpers():  # noqa: ANN202 - the conftest module (importlib mode: load it by path)
    import importlib.util

    spec = importlib.util.spec_from_file_location("_report_conftest", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_all_four_formats_written_and_parseable(scored_report, tmp_path: Path) -> None:
    exts = (".md", ".html", ".csv", ".json")
    paths = {ext: write(scored_report, tmp_path / f"report{ext}") for ext in exts}
    md = paths[".md"].read_text()
    assert md.startswith("# vfrisk evaluation report") and "SYNTHETIC" in md
    assert "## Reporting checklist (TRIPOD+AI)" in md and "abc123def456" in md
    payload = json.loads(paths[".json"].read_text())
    assert payload["synthetic"] is True and payload["run_id"] == "fixture_run"
    assert len(payload["evaluation"]) == len(scored_report.evaluation)
    assert payload["context"]["model"]["model_id"] == "abc123def456"
    assert {s["title"] for s in payload["sections"]} >= {"Cohort", "Calibration", "Subgroups"}
    csv = pd.read_csv(paths[".csv"])
    assert len(csv) == len(scored_report.evaluation)
    columns = ("run_id", "model_id", "score", "site", "subgroup", "horizon", "metric",
               "estimate", "ci_low", "ci_high", "p_value", "n", "events", "method")  # fmt: skip
    assert set(columns) <= set(csv.columns)
    html = paths[".html"].read_text()
    assert html.count("Plotly.newPlot") >= 5  # incidence, td-AUC, calibration, ROC, decision
    assert "SYNTHETIC" in html and "<table>" in html
    assert 'src="https://cdn.plot.ly' not in html and len(html) > 1_000_000  # plotly.js inline
    with pytest.raises(VfriskError) as err:
        check_output(tmp_path / "report.pdf")
    assert err.value.code == "unknown_output_format" and ".html" in err.value.message


def test_evaluation_table_keyed_rows_and_latest_view(tmp_path: Path) -> None:
    db = _helpers().build_db(tmp_path, 800, 4, scans=True, model=True)
    store = Store(db)
    st = _helpers().FAST
    first = build_report(store, dataclasses.replace(st, ci="influence"), run_id="run_a")
    second = build_report(store, dataclasses.replace(st, ci="none", subgroups=False),
                          run_id="run_b")  # fmt: skip
    stored = store.query("SELECT * FROM evaluation")
    assert set(stored["run_id"]) == {"run_a", "run_b"}
    assert (
        stored.groupby("run_id").size() == [len(first.evaluation), len(second.evaluation)]
    ).all()
    latest = store.query("SELECT * FROM evaluation_latest")
    assert set(latest["run_id"]) == {"run_b"} and len(latest) == len(second.evaluation)
    assert set(latest["model_id"]) == {"abc123def456"}
    # keyed: the same (run, model, score, site, subgroup, horizon, metric) cannot repeat,
    # a NULL horizon included
    with pytest.raises(duckdb.ConstraintException), store.write() as con:
        con.execute("INSERT INTO evaluation SELECT * FROM evaluation WHERE run_id = 'run_b' "
                    "AND metric = 'harrell_c' AND site = 'all' AND score = 'model'")  # fmt: skip
    runs = store.query("SELECT * FROM runs WHERE command = 'report' ORDER BY run_id")
    assert list(runs["status"]) == ["ok", "ok"] and list(runs["model_id"]) == ["abc123def456"] * 2
    assert json.loads(runs["counts"].iloc[0])["patients"] == 800
    # the stored rows equal the report's own table
    mine = stored[stored["run_id"] == "run_a"].sort_values(["score", "site", "subgroup", "metric",
                                                            "horizon"])  # fmt: skip
    theirs = first.evaluation.sort_values(["score", "site", "subgroup", "metric", "horizon"])
    np.testing.assert_allclose(mine["estimate"].to_numpy(float), theirs["estimate"].to_numpy(float))


def test_frax_only_report_when_no_predictions(tmp_path: Path) -> None:
    # the importer on a database without scans: every link says no_scan, no predictions
    db = _helpers().build_db(tmp_path, 900, 7, scans=False, model=False)
    store = Store(db)
    st = dataclasses.replace(_helpers().FAST, ci="influence")
    report = build_report(store, st, run_id="frax_only")
    assert report.model_id is None and report.cohort.links == {"no_scan": 900}
    e = report.evaluation
    assert "model" not in set(e["score"])
    assert {"frax_mof", "frax_hip", "cohort"} <= set(e["score"])
    f = report.cohort.frame
    target = ev.SurvivalTarget.from_arrays(f["followup_years"], f["event_type"])
    ref = ev.harrell_c(target, f["frax_mof"], **st.ci_kwargs())
    row = e[(e["score"] == "frax_mof") & (e["metric"] == "harrell_c") & (e["site"] == "all")
            & (e["subgroup"] == "all")].iloc[0]  # fmt: skip
    assert row["estimate"] == pytest.approx(ref.estimate, abs=1e-12)
    md = to_markdown(build_document(report))
    assert "FRAX-only report" in md and "vfrisk score --db" in md and "SYNTHETIC" in md
    assert "Discrimination: the study's table" not in md
    latest = store.query("SELECT count(*) AS n FROM evaluation_latest WHERE model_id IS NULL")
    assert latest["n"].item() == len(e)
    html = write(report, tmp_path / "frax.html").read_text()
    assert html.count("Plotly.newPlot") >= 2


def test_l1_hu_baseline_against_evaluation(tmp_path: Path) -> None:
    h = _helpers()
    db = h.build_db(tmp_path, 1200, 5, scans=True, model=True)
    truth = pd.read_csv(tmp_path / "cohort" / "truth" / "patients.csv")
    store = Store(db)
    # the truth L1 density stands in for measured biomarkers (keyed series, level, version)
    with store.write() as con:
        links = con.execute("SELECT patient_id, series_uid FROM clinical_links").df()
        hu = links.merge(truth[["patient_id", "hu_L1"]], on="patient_id")
        hu.loc[hu.index[:30], "hu_L1"] = np.nan  # missing for some: complete cases
        con.register("_hu", hu)
        con.execute(
            "INSERT INTO biomarkers (series_uid, level, preprocessing_version, present, "
            "trabecular_hu, flags, series_flags) "
            "SELECT series_uid, 'L1', 'pp1', true, hu_L1, '', '' FROM _hu"
        )
        con.unregister("_hu")
    st = dataclasses.replace(h.FAST, ci="influence", subgroups=False)
    report = build_report(store, st, run_id="with_hu")
    assert report.cohort.has_l1_hu
    f = report.cohort.frame
    ok = f["l1_hu"].notna().to_numpy()
    target = ev.SurvivalTarget.from_arrays(f["followup_years"], f["event_type"]).subset(ok)
    e = report.evaluation.query("site == 'all'")

    def est(score: str, metric: str) -> pd.Series:
        return e[(e["score"] == score) & (e["metric"] == metric)].iloc[0]

    # lower HU = higher risk: the score is -HU
    ref = ev.harrell_c(target, -f.loc[ok, "l1_hu"], **st.ci_kwargs())
    assert est("l1_hu", "harrell_c")["estimate"] == pytest.approx(ref.estimate, abs=1e-12)
    assert est("l1_hu", "harrell_c")["n"] == ok.sum() == 1170
    d = ev.compare_concordance(target, f.loc[ok, "risk_5y"], -f.loc[ok, "l1_hu"], **st.ci_kwargs())
    assert est("model", "delta_harrell_c_vs_l1_hu")["estimate"] == pytest.approx(d.difference)
    assert est("cohort", "missing_l1_hu")["estimate"] == 30
    assert est("l1_hu", "harrell_c")["estimate"] > 0.55  # bone density predicts fracture
    assert np.isfinite(est("model", "delta_detection_auc_vs_l1_hu")["p_value"])
    assert "L1 HU" in to_markdown(build_document(report))


def test_bad_inputs_are_clear_errors(scored_db: Path, tmp_path: Path) -> None:
    st = _helpers().FAST
    with pytest.raises(VfriskError) as err:
        build_report(Store(tmp_path / "missing.duckdb"), st)
    assert err.value.code == "db_not_found"
    empty = Store(tmp_path / "empty.duckdb")
    with empty.write():
        pass
    with pytest.raises(VfriskError) as err:
        build_report(empty, st)
    assert err.value.code == "no_clinical_data" and "vfrisk import-clinical" in err.value.message
    with pytest.raises(VfriskError) as err:
        build_report(Store(scored_db), st, model_id="nope", save=False)
    assert err.value.code == "model_not_found" and "abc123def456" in err.value.message


def _vfrisk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True,
                          text=True, cwd=cwd, check=False)  # fmt: skip


def test_cli_report_exit_codes(scored_db: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "fast.toml"
    cfg.write_text('[report]\nci = "influence"\nsubgroups = false\n')
    out = tmp_path / "out" / "report.json"
    ok = _vfrisk("--config", str(cfg), "report", "--db", str(scored_db), "--out", str(out),
                 cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "# vfrisk evaluation report" in ok.stdout and "SYNTHETIC" in ok.stdout
    assert json.loads(out.read_text())["context"]["model"]["model_id"] == "abc123def456"
    cases = [
        (["report", "--db", str(tmp_path / "none.duckdb")], "[db_not_found]"),
        (["report", "--db", str(scored_db), "--model", "nope"], "[model_not_found]"),
        (["report", "--db", str(scored_db), "--out", str(tmp_path / "r.pdf")],
         "[unknown_output_format]"),
    ]  # fmt: skip
    for args, code in cases:
        bad = _vfrisk("--config", str(cfg), *args, cwd=tmp_path)
        assert bad.returncode == 2 and code in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    assert "abc123def456" in _vfrisk("report", "--db", str(scored_db), "--model", "x",
                                     cwd=tmp_path).stderr  # fmt: skip
