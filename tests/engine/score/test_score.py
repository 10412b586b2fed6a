"""`vfrisk score` on a real indexed DICOM archive: what it writes, reruns, bad series."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from engine.anatomy import PreprocessingSettings
from engine.cli import main
from engine.config import load_config
from engine.errors import VfriskError
from engine.prepare import qa_png_path
from engine.score import ScoreRequest, qa_dir_for, score_archive, score_paths
from engine.score.model import load_model
from engine.store import Store
from engine.synth.cohort import series_files


def _score(db: Path, model: Path, **options: object):
    request = ScoreRequest(db=db, model_path=model, device="cpu", progress=False, **options)
    return score_archive(request, load_config())


def test_score_writes_every_table_and_records_bad_series(
    score_db: Path, tiny_model: Path, score_cohort: dict
) -> None:
    summary = _score(score_db, tiny_model, workers=2, batch_size=2)
    good = score_cohort["good"]
    assert (summary.scored, summary.failed, summary.skipped) == (len(good), 2, 0)
    assert summary.failures_by_reason == {"no_spine_found": 1, "truncated": 1}
    store = Store(score_db)
    pred = store.query(
        "SELECT p.*, s.content_hash AS series_hash, s.patient_id AS series_patient "
        "FROM predictions p JOIN series s USING (series_uid) ORDER BY series_uid"
    )
    assert sorted(pred["series_uid"]) == sorted(good)
    assert (pred["model_id"] == summary.model_id).all()
    assert (pred["content_hash"] == pred["series_hash"]).all()
    assert (pred["patient_id"] == pred["series_patient"]).all()
    risk = pred[[f"risk_{t}y" for t in range(1, 6)]].to_numpy()
    assert np.all((risk >= 0) & (risk <= 1)) and np.all(np.diff(risk, axis=1) >= 0)
    assert pred["p_fracture"].between(0, 1).all()
    # the tiny model predicts 7 years: years 6 and 7 go long-form, still non-decreasing
    longer = store.query("SELECT * FROM prediction_horizons ORDER BY series_uid, year")
    assert list(longer["year"]) == [6, 7] * len(good)
    assert np.all(longer["risk"].to_numpy()[0::2] >= risk[:, 4])
    failures = store.query("SELECT * FROM failures ORDER BY series_uid").set_index("series_uid")
    trunc, nospine = score_cohort["truncated"], score_cohort["no_spine"]
    assert failures.loc[trunc, "stage"] == "load"
    assert failures.loc[trunc, "reason_code"] == "truncated"
    assert failures.loc[nospine, "stage"] == "anatomy"
    assert failures.loc[nospine, "reason_code"] == "no_spine_found"
    assert nospine in failures.loc[nospine, "error"]
    bio = store.query("SELECT series_uid, count(*) AS n FROM biomarkers GROUP BY ALL")
    assert sorted(bio["series_uid"]) == sorted(good) and (bio["n"] == 5).all()
    qa = store.query("SELECT * FROM series_qa ORDER BY series_uid")
    assert sorted(qa["series_uid"]) == sorted(good)
    for uid, png in zip(qa["series_uid"], qa["qa_png"], strict=True):
        assert Path(png) == qa_png_path(qa_dir_for(score_db), uid).absolute()
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = store.query("SELECT * FROM models").iloc[0]
    assert model["model_id"] == summary.model_id
    assert model["sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert model["preprocessing_version"] == load_config()["preprocessing"]["version"]
    run = store.query("SELECT * FROM runs WHERE command = 'score'").iloc[0]
    assert (run["status"], run["model_id"], run["device"]) == ("ok", summary.model_id, "cpu")
    counts = json.loads(run["counts"])
    assert (counts["scored"], counts["failed"]) == (len(good), 2)


def test_rerun_scores_only_what_is_missing_changed_or_asked_for(
    score_db: Path, tiny_model: Path, score_cohort: dict
) -> None:
    first = _score(score_db, tiny_model, batch_size=8, qa_png=False)
    again = _score(score_db, tiny_model, batch_size=8, qa_png=False)
    assert (again.due, again.scored, again.failed, again.skipped) == (0, 0, 0, first.selected)
    changed = score_cohort["good"][0]
    with Store(score_db).write() as con:  # as `vfrisk index` does when a slice changes
        con.execute("UPDATE series SET content_hash = 'new' WHERE series_uid = ?", [changed])
    dry = _score(score_db, tiny_model, dry_run=True)
    assert [(e.series_uid, e.why) for e in dry.dry_run] == [(changed, "changed")]
    rescored = _score(score_db, tiny_model, qa_png=False)
    assert (rescored.scored, rescored.failed) == (1, 0)
    stored = Store(score_db).query(
        "SELECT content_hash FROM predictions WHERE series_uid = ?", [changed]
    )
    assert list(stored["content_hash"]) == ["new"]
    retried = _score(score_db, tiny_model, retry_failed=True, qa_png=False)
    assert (retried.due, retried.failed) == (2, 2)
    everything = _score(score_db, tiny_model, rescore=True, qa_png=False)
    assert everything.due == first.selected


def test_adhoc_scoring_gives_the_risk_the_batch_run_stored(
    score_db: Path, tiny_model: Path, score_cohort: dict, tmp_path: Path
) -> None:
    _score(score_db, tiny_model, batch_size=4, qa_png=False)
    uid = score_cohort["good"][1]
    stored = Store(score_db).query("SELECT * FROM predictions WHERE series_uid = ?", [uid]).iloc[0]
    files = series_files(score_cohort["cohort"], uid)
    result = score_paths(files, load_config(), tiny_model, qa_dir=tmp_path, device="cpu")
    assert result.prepared.series_uid == uid
    assert result.prediction.p_fracture == pytest.approx(stored["p_fracture"], abs=1e-6)
    for t in range(1, 6):
        assert result.prediction.risk[t - 1] == pytest.approx(stored[f"risk_{t}y"], abs=1e-6)
    assert qa_png_path(tmp_path, uid).is_file()
    nospine = sorted((score_cohort["cohort"] / "archive" / "NOSPINE").iterdir())
    with pytest.raises(VfriskError) as err:
        score_paths(nospine, load_config(), tiny_model, device="cpu")
    assert err.value.code == "no_spine_found"


def test_warm_up_scores_a_blank_series_and_changes_nothing(tiny_model: Path) -> None:
    import torch

    settings = PreprocessingSettings.from_config(load_config())
    model = load_model(tiny_model, settings.version, "cpu")
    before = {k: v.clone() for k, v in model.checkpoint.model.state_dict().items()}
    model.warm_up(settings)
    after = model.checkpoint.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cli_summary_dry_run_and_missing_model(
    score_db: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = ["--log-file", str(tmp_path / "log.jsonl"), "score", "--db", str(score_db)]
    assert main([*base, "--model", str(tiny_model), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Dry run" in out and "5 of 5 selected series would be scored" in out
    code = main([*base, "--model", str(tiny_model), "--workers", "1", "--no-progress", "--no-qa"])
    out = capsys.readouterr().out
    assert code == 0
    assert "3 scored, 0 skipped, 2 failed of 5 selected" in out
    assert "no_spine_found 1, truncated 1" in out and "SYNTHETIC" in out
    # where the run's time went (bench/score_throughput.py prints it)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    (pipeline,) = [r for r in log if r["event"] == "score.pipeline"]
    assert (pipeline["series"], pipeline["workers"]) == (3, 1)  # the 2 bad ones never prepared
    assert {"load", "anatomy", "inputs", "biomarkers"} <= set(pipeline["worker_seconds_per_series"])
    assert 0 < pipeline["worker_busy"] <= 1.0 and pipeline["model_seconds"] > 0
    assert pipeline["worker_peak_rss_mb"] > 50  # at least the interpreter, numpy and torch
    assert main([*base, "--model", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err
    assert "[model_missing]" in err and "none.pt" in err and "vfrisk train" in err
    assert main(["--log-file", str(tmp_path / "l"), "score", "--db", str(tmp_path / "x.duckdb"),
                 "--model", str(tiny_model)]) == 2  # fmt: skip
    assert "[db_not_found]" in capsys.readouterr().err
