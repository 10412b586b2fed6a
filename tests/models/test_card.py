"""The model card: metrics against the evaluation module, rendering, the synthetic check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.evaluation import SurvivalTarget, auroc, calibration, cumulative_dynamic_auc, harrell_c
from models.card import (
    NOTICE,
    card_paths,
    find_cohort_manifest,
    metrics_for,
    record_check,
    render_markdown,
    write_card,
)
from models.data import Example
from models.inference import Prediction

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "example"


def _cohort(n: int, seed: int) -> tuple[list[Example], list[Prediction]]:
    """Patients whose risk and fracture probability carry signal, plus noise."""
    rng = np.random.default_rng(seed)
    frail = rng.normal(size=n)
    time = rng.exponential(4.0 / np.exp(0.8 * frail))
    censor = rng.uniform(1, 7, size=n)
    event = np.where(time <= censor, 1, 0)
    event[(event == 0) & (rng.random(n) < 0.1)] = 2
    years = np.minimum(time, censor)
    prevalent = (frail + rng.normal(size=n) > 1.0).astype(int)
    examples, preds = [], []
    for i in range(n):
        examples.append(Example(f"P{i}", f"1.2.{i}", "dev", Path("x.npz"), int(prevalent[i]),
                                float(years[i]), int(event[i])))  # fmt: skip
        base = 1 / (1 + np.exp(-(frail[i] - 2.0)))
        risk = tuple(float(1 - (1 - base) ** t) for t in range(1, 6))
        p = float(1 / (1 + np.exp(-(frail[i] + rng.normal()))))
        preds.append(Prediction(f"1.2.{i}", p, risk))
    return examples, preds


def test_metrics_for_against_the_evaluation_module() -> None:
    examples, preds = _cohort(300, seed=4)
    m = metrics_for(examples, preds, n_boot=200, seed=1)
    target = SurvivalTarget.from_arrays([e.followup_years for e in examples],
                                        [e.event for e in examples])  # fmt: skip
    risk = np.array([p.risk for p in preds])
    # reference: the same calls made directly (tolerance: rounding to 4 decimals)
    c = harrell_c(target, risk[:, 4], n_boot=200, seed=1)
    assert m["c_index"]["estimate"] == pytest.approx(c.estimate, abs=1e-4)
    assert m["c_index"]["ci_low"] == pytest.approx(c.ci_low, abs=1e-4)
    td = cumulative_dynamic_auc(target, risk[:, [1, 2, 4]], [2, 3, 5], n_boot=200, seed=1)
    assert [m["td_auc"][k]["estimate"] for k in ("2y", "3y", "5y")] == pytest.approx(
        td.estimate, abs=1e-4
    )
    a = auroc([e.prevalent_vf for e in examples], [p.p_fracture for p in preds])
    assert m["detection_auroc"]["estimate"] == pytest.approx(a.estimate, abs=1e-4)
    cal = calibration(target, risk[:, 4], 5.0)
    assert m["calibration_5y"]["slope"]["estimate"] == pytest.approx(cal.slope, abs=1e-4)
    assert m["n"] == 300 and m["prevalent"] == sum(e.prevalent_vf for e in examples)
    assert m["incident_5y"] == sum(e.event == 1 and e.followup_years < 5 for e in examples)
    assert 0.5 < m["c_index"]["estimate"] < 1.0 and not m["notes"]


def test_metrics_for_says_why_a_metric_is_missing() -> None:
    examples, preds = _cohort(20, seed=2)
    censored = [Example(e.patient_id, e.series_uid, e.site, e.cache_path, e.prevalent_vf,
                        e.followup_years, 0) for e in examples]  # fmt: skip
    m = metrics_for(censored, preds)
    assert "c_index" not in m and m["notes"] and "fracture" in m["notes"][0]
    detection_only = [Prediction(p.series_uid, p.p_fracture, None) for p in preds]
    m = metrics_for(examples, detection_only)
    assert "c_index" not in m and "detection_auroc" in m


def _card(metrics: dict) -> dict:
    return {
        "format": "vfrisk-model-card/1", "notice": NOTICE, "name": "net", "model_id": "ab12",
        "checkpoint": "net.pt", "checkpoint_bytes": 10, "created_at": "2026-01-01T00:00:00Z",
        "code_version": "0.1.0", "command": "vfrisk train --db x.duckdb",
        "reproduce": ["vfrisk synth c --patients 5 --sites dev:1 --seed 1 --resolution low",
                      "vfrisk train --db x.duckdb"],
        "data": {"cohort": None, "clinical_patients_per_site": {"dev": 5},
                 "training_sites": ["dev"], "labels": "clinical table",
                 "patients_with_inputs": {"dev": {"patients": 5, "prevalent": 1,
                                                  "prevalence": 0.2, "incident_5y": 1,
                                                  "incidence_5y_crude": 0.2}},
                 "prepare_failures": []},
        "configuration": {
            "model": {"task": "multitask", "input_variant": "bone_muscle",
                      "weighting": "uncertainty", "width": 32, "depth": [1, 1, 2, 1],
                      "fusion": "attention", "triplets_per_level": 3},
            "train": {"recipe": "default", "optimizer": "AdamW", "lr": 0.001,
                      "weight_decay": 0.0001, "batch_size": 16, "batches": "stratified",
                      "epochs": 30, "patience": 8, "seed": 0, "folds": None,
                      "val_fraction": 0.2,
                      "augmentation": {"enabled": True, "rotate_deg": 10.0, "scale": 0.1,
                                       "shift": 0.05, "flip_p": 0.5, "blur_sigma": 1.0,
                                       "noise_sd": 0.0125, "offset": 0.0}},
            "preprocessing": {"version": "pp1", "intensity": "fixed_window"}},
        "training": {"device": "cpu", "cpu_threads": 2, "train_seconds": 12.0,
                     "total_seconds": 20.0, "prepare_seconds": 8.0, "saved_fold": 1,
                     "folds": [{"fold": 1, "best_epoch": 3, "epochs_run": 5,
                                "val_metric": 0.7}]},
        "metrics": {"internal_validation": metrics, "external": {"ext_a": metrics}},
    }  # fmt: skip


def test_card_renders_and_records_a_check(tmp_path: Path) -> None:
    examples, preds = _cohort(120, seed=5)
    metrics = metrics_for(examples, preds, n_boot=100)
    checkpoint = tmp_path / "net.pt"
    json_path, md_path = write_card(_card(metrics), checkpoint)
    assert (json_path, md_path) == card_paths(checkpoint)
    assert json_path.name == "net.card.json" and md_path.name == "net.card.md"
    md = md_path.read_text()
    assert md.count(NOTICE) == 2 and "| internal validation | 120 |" in md
    assert "| external: ext_a | 120 |" in md and "vfrisk synth c --patients 5" in md
    assert "yearly hazards relu, intensity branch off" in md
    branch = _card(metrics)
    # a card written before bone_features / muscle_features existed: every feature was read
    branch["configuration"]["model"].update(intensity_features=True, input_variant="bone_muscle")
    legacy_md = render_markdown(branch)
    assert "bone features: bone_mean, bone_median, bone_sd, body_area_cm2" in legacy_md
    assert "muscle features: muscle_area_cm2, muscle_mean, muscle_median)" in legacy_md
    branch["configuration"]["model"].update(input_variant="bone", bone_features=["bone_mean"])
    assert "on (bone features: bone_mean)\n" in render_markdown(branch)
    branch["configuration"]["model"].update(input_variant="bone_muscle", muscle_features=[])
    assert "(bone features: bone_mean; muscle features: none)" in render_markdown(branch)
    assert "flip p 0.5; scanner: blur up to 1.0 px, noise up to 0.0125, offset +-0.0" in md
    c = metrics["c_index"]
    assert f"{c['estimate']:.3f} ({c['ci_low']:.3f}-{c['ci_high']:.3f})" in md
    check = {
        "cohort": {"seed": 77, "patients": 150, "sites": "ext_a:1,ext_b:1", "resolution": "low"},
        "model_id": "ab12", "n": 149, "failed": 1, "grade2_cases": 12, "any_grade_cases": 20,
        "incident_5y": 15,
        "detection_auroc_grade2": {"estimate": 0.9, "ci_low": 0.8, "ci_high": 0.97},
        "detection_auroc_any": {"estimate": 0.8, "ci_low": 0.7, "ci_high": 0.9},
        "c_index": {"model_5y": {"estimate": 0.7, "ci_low": 0.6, "ci_high": 0.8},
                    "oracle_image_5y": {"estimate": 0.75, "ci_low": 0.65, "ci_high": 0.85}},
        "c_ratio_to_oracle_image": 0.9333,
        "c_ratio_combined_to_oracle_full": 0.9612,
        "model_vs_frax": {"difference": -0.035, "ci_low": -0.16, "ci_high": 0.09,
                          "p_value": 0.58},
        "model_vs_oracle_image": {"difference": -0.05, "ci_low": -0.09, "ci_high": -0.015,
                                  "p_value": 0.004},
        "risk_by_year": {"predicted_mean": [0.05, 0.1, 0.12, 0.13, 0.15],
                         "observed_aj": [0.04, 0.09, None, 0.12, 0.14]},
        "by_site": {"ext_a": {"n": 75, "c_index": {"estimate": 0.72, "ci_low": 0.6,
                                                  "ci_high": 0.8},
                              "c_oracle_image": 0.75, "c_ratio_to_oracle_image": 0.96},
                    "ext_b": {"n": 74}},
        "calibration_5y": {"slope": {"estimate": 1.1, "ci_low": 0.7, "ci_high": 1.5},
                           "intercept": {"estimate": 0.1, "ci_low": -0.2, "ci_high": 0.4},
                           "ici": 0.02},
    }  # fmt: skip
    record_check(checkpoint, check)
    assert json.loads(json_path.read_text())["synthetic_check"] == check
    md = md_path.read_text()
    assert "seed 77, 150 patients" in md and "grade >= 2: 0.900 (0.800-0.970)" in md
    # the ratio's interval: 1 + the paired difference's over the oracle's c-index (0.75)
    assert (
        "model / oracle_image c-index: 0.933 (0.880-0.980; paired difference -0.050 "
        "(-0.090 to -0.015), p = 0.004)" in md
    )
    assert (
        "- site ext_a: 75 patients; c-index 0.720 (0.600-0.800) against oracle_image "
        "0.750 (0.960 x)" in md
    )
    assert "- site ext_b: 74 patients\n" in md  # what its counts cannot support is left out
    assert "cross-fitted on this cohort) / oracle_full c-index: 0.961" in md
    assert "model - FRAX-like c-index (paired): -0.035 (-0.160 to +0.090), p = 0.580" in md
    assert "mean predicted: 0.050, 0.100, 0.120, 0.130, 0.150" in md
    assert "competing): 0.040, 0.090, -, 0.120, 0.140" in md
    assert "slope 1.100 (0.700-1.500), intercept 0.100 (-0.200-0.400), ICI 0.020" in md


def test_find_cohort_manifest_from_a_hint() -> None:
    found = find_cohort_manifest(store=None, examples=[], hint=SAMPLE)  # type: ignore[arg-type]
    assert found is not None and found["request"]["seed"] == 9
    assert found["path"] == str((SAMPLE / "manifest.json").resolve())
    assert "labels" not in found
    assert find_cohort_manifest(store=None, examples=[], hint=SAMPLE / "archive") is None  # type: ignore[arg-type]


def _clinical_cohort(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Clinical rows whose fracture hazard rises with age and with an image risk."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({
        "age": rng.normal(72, 8, n), "sex": rng.choice(["F", "M"], n),
        "bmi": rng.normal(26, 4, n),
        **{c: rng.integers(0, 2, n).astype(float) for c in (
            "prior_fracture", "parent_hip_fracture", "current_smoking", "glucocorticoids",
            "rheumatoid_arthritis", "secondary_osteoporosis", "alcohol_3plus")},
    })  # fmt: skip
    image = rng.normal(0, 1, n)
    hazard = 0.05 * np.exp(0.8 * image + 0.08 * (rows["age"] - 72))
    t_fx = rng.exponential(1 / hazard)
    censor = rng.uniform(2, 7, n)
    rows["followup_years"] = np.minimum(t_fx, censor)
    rows["event_type"] = (t_fx <= censor).astype(int)
    risk = 1 / (1 + np.exp(-(image - 1.5)))
    return rows, risk


def test_cross_fitted_combined_scores_every_patient_out_of_fold() -> None:
    from models.card import cross_fitted_combined

    rows, risk = _clinical_cohort(400, seed=3)
    rows.loc[7, "bmi"] = np.nan
    score = cross_fitted_combined(rows, risk)
    assert np.isnan(score[7]) and np.isfinite(np.delete(score, 7)).all()
    assert np.array_equal(score, cross_fitted_combined(rows, risk), equal_nan=True)
    keep = np.isfinite(score)
    target = SurvivalTarget.from_arrays(rows["followup_years"][keep], rows["event_type"][keep])
    c_combined = harrell_c(target, score[keep], ci="none").estimate
    c_image = harrell_c(target, risk[keep], ci="none").estimate
    assert c_combined > c_image > 0.6, "age adds to the image risk, out of fold"


def test_cross_fitted_combined_refuses_a_cohort_with_too_few_fractures() -> None:
    from engine.errors import VfriskError
    from models.card import cross_fitted_combined

    rows, risk = _clinical_cohort(400, seed=3)
    rows["event_type"] = 0
    rows.loc[:7, "event_type"] = 1
    with pytest.raises(VfriskError) as err:
        cross_fitted_combined(rows, risk)
    assert err.value.code == "comparator_not_fitted"


def test_check_against_a_second_checkpoint(tmp_path: Path, tiny_config) -> None:  # noqa: ANN001
    """``--against``: both checkpoints scored on the same patients, compared paired."""
    import dataclasses

    import torch

    from engine.anatomy.inputs import PreprocessingSettings
    from engine.config import load_config
    from engine.errors import VfriskError
    from engine.synth.cohort import SynthRequest, synthesize
    from models.card import synthetic_check
    from models.checkpoint import save_checkpoint
    from models.network import FractureNet

    config = load_config()
    version = PreprocessingSettings.from_config(config).version
    cohort = tmp_path / "c"
    synthesize(SynthRequest(out=cohort, patients=24, sites="ext_a:1,ext_b:1", seed=4141))
    paths = {}
    for name, variant, task in (
        ("muscle", "bone_muscle", "multitask"), ("bone", "bone", "multitask"),
        ("detect", "bone_muscle", "detection"),
    ):  # fmt: skip
        torch.manual_seed(len(name))
        net = FractureNet(dataclasses.replace(tiny_config, input_variant=variant, task=task))
        paths[name] = tmp_path / f"{name}.pt"
        save_checkpoint(net.eval(), paths[name], preprocessing_version=version)
    cache = tmp_path / "cache"
    check = synthetic_check(paths["muscle"], cohort, config, cache_dir=cache, against=paths["bone"])
    alone = {
        name: synthetic_check(paths[name], cohort, config, cache_dir=cache)
        for name in ("muscle", "bone")
    }
    vs = check["vs_other"]
    assert vs["input_variant"] == "bone" and vs["task"] == "multitask"
    assert vs["c_index"] == alone["bone"]["c_index"]["model_5y"]
    c_muscle = alone["muscle"]["c_index"]["model_5y"]["estimate"]
    assert vs["difference"] == pytest.approx(c_muscle - vs["c_index"]["estimate"], abs=1e-9)
    assert 0.0 <= vs["p_value"] <= 1.0 and vs["ci_low"] <= vs["difference"] <= vs["ci_high"]
    oracle = check["c_index"]
    gain = oracle["oracle_image_5y"]["estimate"] - oracle["oracle_bone_5y"]["estimate"]
    if gain > 0:
        # the card rounds to 4 decimals: the share (of unrounded values) to 1e-4, and the
        # difference and both oracle estimates it is recomputed from here to 5e-5 each
        share = vs["difference"] / gain
        slack = 1e-4 + (5e-5 + 1e-4 * abs(share)) / abs(gain)
        assert vs["share_of_oracle_muscle_gain"] == pytest.approx(share, abs=slack)
    # per site: the counts add up, and each ratio is its c-index over its oracle's
    by_site = check["by_site"]
    assert set(by_site) == {"ext_a", "ext_b"}
    assert sum(m["n"] for m in by_site.values()) == check["n"]
    for m in by_site.values():
        if "c_index" in m:
            ratio = m["c_index"]["estimate"] / m["c_oracle_image"]
            assert m["c_ratio_to_oracle_image"] == pytest.approx(ratio, abs=1e-3)
    assert any("c_index" in m for m in by_site.values())
    with pytest.raises(VfriskError, match="need survival heads"):
        synthetic_check(paths["muscle"], cohort, config, cache_dir=cache, against=paths["detect"])
    # a missing second checkpoint is named before the cohort is even read
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        synthetic_check(
            paths["muscle"], tmp_path / "nowhere", config, against=tmp_path / "missing.pt"
        )


def test_check_pools_several_cohorts(tmp_path: Path, tiny_config, capsys) -> None:  # noqa: ANN001
    """Several cohorts (their archives gone once the cache holds their inputs) make one
    check: every patient once, keyed by cohort, though the cohorts number theirs alike."""
    import shutil

    import torch

    from engine.anatomy.inputs import PreprocessingSettings
    from engine.config import load_config
    from engine.errors import VfriskError
    from engine.synth.cohort import SynthRequest, synthesize
    from models.card import _check_lines, main, synthetic_check
    from models.checkpoint import save_checkpoint
    from models.network import FractureNet

    config = load_config()
    torch.manual_seed(3)
    checkpoint = tmp_path / "net.pt"
    version = PreprocessingSettings.from_config(config).version
    save_checkpoint(FractureNet(tiny_config).eval(), checkpoint, preprocessing_version=version)
    cohorts = [tmp_path / "a", tmp_path / "b"]
    for seed, out in zip((4242, 4343), cohorts, strict=True):
        synthesize(SynthRequest(out=out, patients=10, sites="ext_a:1,ext_b:1", seed=seed))
    cache = tmp_path / "cache"
    first = synthetic_check(checkpoint, cohorts, config, cache_dir=cache)
    for c in cohorts:
        shutil.rmtree(c / "archive")  # from here on the inputs come from the cache only
    pooled = synthetic_check(checkpoint, cohorts, config, cache_dir=cache)
    assert pooled == first
    assert pooled["failed"] == 0 and pooled["n"] == 20
    assert [r["seed"] for r in pooled["cohort"]] == [4242, 4343]
    assert sum(m["n"] for m in pooled["by_site"].values()) == 20
    # the truth rows follow their own cohort: the oracle's c-index over both truth tables
    truth = pd.concat(pd.read_csv(c / "truth" / "patients.csv") for c in cohorts)
    assert pooled["any_grade_cases"] == truth["prevalent_vf"].sum()
    assert (
        pooled["incident_5y"] == ((truth["event_type"] == 1) & (truth["followup_years"] < 5)).sum()
    )
    target = SurvivalTarget.from_arrays(truth["followup_years"], truth["event_type"])
    oracle = harrell_c(target, truth["oracle_image_5y"].to_numpy()).estimate
    assert pooled["c_index"]["oracle_image_5y"]["estimate"] == pytest.approx(oracle, abs=1e-4)
    vs = pooled["model_vs_oracle_image"]
    c = pooled["c_index"]
    difference = c["model_5y"]["estimate"] - c["oracle_image_5y"]["estimate"]
    assert vs["difference"] == pytest.approx(difference, abs=2e-4)
    assert vs["ci_low"] <= vs["difference"] <= vs["ci_high"]
    assert (
        "2 `vfrisk synth` cohorts pooled, seeds 4242, 4343, 20 patients" in _check_lines(pooled)[0]
    )
    with pytest.raises(VfriskError, match="same seed 4242 and may hold the same") as same:
        synthetic_check(checkpoint, [cohorts[0], cohorts[0]], config, cache_dir=cache)
    assert same.value.code == "bad_argument"
    with pytest.raises(VfriskError, match="nowhere is not a folder written by `vfrisk synth`"):
        synthetic_check(checkpoint, [cohorts[0], tmp_path / "nowhere"], config)
    broken = tmp_path / "broken"
    shutil.copytree(cohorts[1], broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(VfriskError, match="manifest.json cannot be read as a `vfrisk synth`"):
        synthetic_check(checkpoint, [cohorts[0], broken], config)
    # the command says so in one line and exits 2, no traceback
    assert main(["check", str(checkpoint), str(cohorts[0]), str(tmp_path / "nowhere")]) == 2
    assert "error [bad_argument]" in capsys.readouterr().err
