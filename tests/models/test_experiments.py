"""``vfrisk experiments``: the table against direct evaluation calls, variants, and a whole
run on a generated cohort (trained tiny variants, resumed, rows in DuckDB)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import evaluation as ev
from engine.anatomy.inputs import PreprocessingSettings
from engine.config import load_config
from engine.errors import VfriskError
from engine.report.settings import ReportSettings
from models.experiment_report import (
    ScoredModel,
    evaluate_models,
    site_groups,
    to_markdown,
    verdict,
)
from models.experiments import REFERENCE, ExperimentRequest, variant_preprocessing

FAST = ReportSettings(n_boot=100, seed=1)


def _frame(n: int = 450, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Patients of three sites with a latent risk that drives fracture and prevalence."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    t_fx = rng.exponential(8.0 * np.exp(-latent))
    t_death = rng.exponential(25.0, n)
    t_cens = rng.uniform(2.0, 7.0, n)
    time = np.minimum.reduce([t_fx, t_death, t_cens])
    event = np.select([time == t_fx, time == t_death], [1, 2], 0)
    frame = pd.DataFrame(
        {
            "site": rng.choice(["dev", "ext_a", "ext_b"], n),
            "prevalent_vf": (latent + rng.normal(0, 0.8, n) > 0.9).astype(float),
            "followup_years": time,
            "event_type": event,
        }
    )
    return frame, latent


def _models(frame: pd.DataFrame, latent: np.ndarray) -> list[ScoredModel]:
    rng = np.random.default_rng(7)
    good = latent + rng.normal(0, 0.3, len(frame))
    risk = 1 - np.exp(-np.outer(np.exp(good), np.arange(1, 6)) / 10)  # monotone in t
    noise = rng.normal(size=len(frame))
    noise[:10] = np.nan  # missing for a few patients: compared on complete pairs
    return [
        ScoredModel(REFERENCE, "Multitask, bone+muscle", "variant", good, risk),
        ScoredModel("frax_mof", "FRAX MOF (given)", "comparator", noise, noise),
    ]


def test_site_groups_put_dev_first_and_pool_the_external_sites() -> None:
    groups = site_groups(["ext_b", "dev", "ext_a", "ext_a"], ("dev",))
    assert [g for g, _ in groups] == ["dev", "ext_a", "ext_b", "external"]
    assert groups[-1][1].tolist() == [True, False, True, True]
    assert [g for g, _ in site_groups(["dev", "ext_a"], ("dev",))] == ["dev", "ext_a"]


def test_table_against_direct_evaluation_calls() -> None:
    frame, latent = _frame()
    models = _models(frame, latent)
    table = evaluate_models(
        frame, models, reference=REFERENCE, dev_sites=("dev",), settings=FAST
    ).rows
    assert set(table["site"]) == {"dev", "ext_a", "ext_b", "external"}
    ext = (frame["site"] != "dev").to_numpy()
    target = ev.SurvivalTarget.from_arrays(frame["followup_years"][ext], frame["event_type"][ext])
    ref, frax = models

    def row(score: str, metric: str, horizon: float | None = None) -> pd.Series:
        sel = (
            (table["score"] == score) & (table["site"] == "external") & (table["metric"] == metric)
        )
        sel &= table["horizon"].isna() if horizon is None else table["horizon"] == horizon
        assert sel.sum() == 1, (score, metric, horizon)
        return table[sel].iloc[0]

    c = ev.harrell_c(target, ref.survival[ext, 4], **FAST.ci_kwargs())
    r = row(REFERENCE, "harrell_c")
    assert (r.estimate, r.ci_low, r.ci_high) == pytest.approx((c.estimate, c.ci_low, c.ci_high))
    td = ev.cumulative_dynamic_auc(
        target, ref.survival[ext][:, [1, 2, 4]], [2.0, 3.0, 5.0], **FAST.ci_kwargs()
    )
    for j, h in enumerate((2.0, 3.0, 5.0)):
        assert row(REFERENCE, "td_auc", h).estimate == pytest.approx(td.estimate[j])
    y = frame["prevalent_vf"].to_numpy()[ext].astype(int)
    assert row(REFERENCE, "detection_auc").estimate == pytest.approx(
        ev.auroc(y, ref.detection[ext]).estimate
    )
    ok = np.isfinite(frax.survival[ext])
    pair = ev.compare_concordance(
        target.subset(ok), frax.survival[ext][ok], ref.survival[ext, 4][ok], **FAST.ci_kwargs()
    )
    d = row("frax_mof", f"delta_harrell_c_vs_{REFERENCE}")
    assert (d.estimate, d.p_value, d.n) == pytest.approx((pair.difference, pair.p_value, pair.n))
    dd = ev.compare_auroc(y[ok], frax.detection[ext][ok], ref.detection[ext][ok])
    d = row("frax_mof", f"delta_detection_auc_vs_{REFERENCE}")
    assert (d.estimate, d.p_value) == pytest.approx((dd.difference, dd.p_value))
    assert (
        not (table["score"] == REFERENCE)
        .pipe(lambda s: table[s]["metric"].str.startswith("delta_"))
        .any()
    )  # the reference is not compared with itself


def test_markdown_and_verdict_say_who_wins_and_that_it_is_synthetic() -> None:
    frame, latent = _frame()
    models = _models(frame, latent)
    table = evaluate_models(frame, models, reference=REFERENCE, dev_sites=("dev",), settings=FAST)
    lines = verdict(table, models, reference=REFERENCE, dev_sites=("dev",))
    assert lines[0].startswith("YES at the external sites pooled")
    assert "Significantly better than: FRAX MOF (given)" in lines[0]
    md = to_markdown(
        table, frame, models, reference=REFERENCE, dev_sites=("dev",), settings=FAST,
        grade2_known=False,
    )  # fmt: skip
    assert "Synthetic data only" in md and "Not for clinical use" in md
    assert "## dev (development site" in md and "## external (all external sites pooled)" in md
    assert "| Multitask, bone+muscle (reference) |" in md
    assert "grade >= 2 AUROC needs the grade" in md
    # the comparator loses: swap the scores and the verdict turns
    swapped = [
        ScoredModel(REFERENCE, "Multitask, bone+muscle", "variant", models[1].detection,
                    models[1].survival),
        ScoredModel("frax_mof", "FRAX MOF (given)", "comparator", models[0].detection,
                    models[0].survival[:, 4]),
    ]  # fmt: skip
    table2 = evaluate_models(frame, swapped, reference=REFERENCE, dev_sites=("dev",), settings=FAST)
    assert verdict(table2, swapped, reference=REFERENCE, dev_sites=("dev",))[0].startswith("NO")


def test_requests_check_variants_and_always_include_the_reference() -> None:
    with pytest.raises(VfriskError) as err:
        ExperimentRequest(db=Path("x.duckdb"), out=Path("o"), variants=("multitask_bones",))
    assert err.value.code == "unknown_variant" and "multitask_bones" in err.value.message
    req = ExperimentRequest(db=Path("x"), out=Path("o"), variants=("survival_bone_muscle",))
    assert req.chosen == (REFERENCE, "survival_bone_muscle")


def test_min_max_variant_has_its_own_preprocessing_version() -> None:
    base = PreprocessingSettings.from_config(load_config())
    assert variant_preprocessing(base, base.intensity) is base
    other = variant_preprocessing(base, "study_minmax")
    assert other.intensity == "study_minmax" and other.version == f"{base.version}-study_minmax"
    assert other.digest() != base.digest()


# -- a whole run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """20 low-resolution patients (12 dev, 8 ext_b, high fracture rates), indexed and
    imported through the CLI; a configuration for tiny fast runs."""
    from engine.cli import main

    root = tmp_path_factory.mktemp("experiments")
    text = Path("sample_data/site_profiles.toml").read_text()
    for key, value in (("fracture_hazard_ratio", "4.0"), ("prevalent_ratio", "4.0"),
                       ("p_bone_recon", "0.0"), ("p_derived", "0.0")):  # fmt: skip
        text = re.sub(rf"{key} = [0-9.]+", f"{key} = {value}", text)
    (root / "profiles.toml").write_text(text)
    cohort, db = root / "cohort", root / "vf.duckdb"
    assert main(["synth", str(cohort), "--patients", "20", "--sites", "dev:0.6,ext_b:0.4",
                 "--seed", "3", "--resolution", "low", "--workers", "2",
                 "--profiles", str(root / "profiles.toml")]) == 0  # fmt: skip
    assert main(["index", str(cohort / "archive"), "--db", str(db), "--no-progress"]) == 0
    assert main(["import-clinical", str(cohort / "clinical.csv"), "--db", str(db)]) == 0
    cfg = root / "tiny.toml"
    cfg.write_text(
        "[train]\nmin_events = 1\nval_fraction = 0.4\nbatch_size = 4\nworkers = 2\n"
        "[report]\nmin_cell_count = 1\n"
        "[experiments]\ncox_min_events = 2\nquick_n_boot = 50\n"
    )
    return db, cohort, cfg


@pytest.mark.slow
def test_experiments_end_to_end_and_resume(tiny_db, tmp_path: Path) -> None:  # noqa: ANN001
    from engine.store import Store
    from models.experiments import run_experiments

    db, cohort, cfg = tiny_db
    config = load_config(cfg)
    variants = (REFERENCE, "detection_bone_muscle", "multitask_bone_muscle_minmax")
    req = ExperimentRequest(
        db=db, out=tmp_path / "exp", variants=variants, quick=True, workers=2, truth=cohort,
        run_id="exp1", device="cpu",
    )  # fmt: skip
    ticks: list[tuple[int, int]] = []
    first = run_experiments(req, config, progress=lambda d, t: ticks.append((d, t)), log=print)
    assert first.trained == variants and not first.skipped and not first.failed
    assert ticks[0] == (0, 3) and ticks[-1] == (3, 3)
    for name in variants:
        assert (req.out / f"{name}.pt").is_file() and (req.out / f"{name}.done.json").is_file()
    rows = first.rows
    dev = rows[rows["site"] == "dev"]
    comparators = {"frax_mof", "frax_hip", "cox_clinical", "l1_hu_le110", "l1_hu_le160",
                   "l1_hu", "cox_biomarkers", "cox_combined"}  # fmt: skip
    oracles = {"oracle_full", "oracle_image", "oracle_bone"}
    assert set(dev["score"]) == set(variants) | comparators | oracles
    metrics = dev.groupby("score")["metric"].agg(set)
    for name in (REFERENCE, "multitask_bone_muscle_minmax"):
        assert {"detection_auc", "detection_auc_grade2", "harrell_c", "td_auc"} <= metrics[name]
    assert "harrell_c" not in metrics["detection_bone_muscle"]  # no survival head
    for name in comparators | {"detection_bone_muscle", "multitask_bone_muscle_minmax"}:
        assert f"delta_detection_auc_vs_{REFERENCE}" in metrics[name], name
    for name in comparators | oracles | {"multitask_bone_muscle_minmax"}:
        assert {"harrell_c", f"delta_harrell_c_vs_{REFERENCE}"} <= metrics[name], name
    assert set(rows["site"]) == {"dev", "ext_b"}
    md = (req.out / "experiments.md").read_text()
    assert "Synthetic data only" in md and "## ext_b (external site)" in md
    assert "Does the deep model beat the simple baselines?" in md
    with Store(db).read() as con:
        stored = con.execute(
            "SELECT model_id, score, count(*) FROM evaluation WHERE run_id = 'exp1' GROUP BY ALL"
        ).fetchall()
    by_model = {(m, s) for m, s, _ in stored}
    ids = {n: json.loads((req.out / f"{n}.done.json").read_text())["model_id"]
           for n in variants}  # fmt: skip
    assert {(ids[n], "model") for n in variants} <= by_model
    assert (ids[REFERENCE], "frax_mof") in by_model
    assert sum(n for *_, n in stored) == len(rows)

    again = run_experiments(
        ExperimentRequest(**{**req.__dict__, "run_id": "exp2"}), config, log=print
    )
    assert again.skipped == variants and not again.trained
    pd.testing.assert_frame_equal(again.rows, first.rows)  # same predictions, same seeds
