"""The study's comparators: Cox fits against lifelines and R, L1 cut-offs by hand, and the
comparators of a generated cohort read back through the real DuckDB store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine.anatomy.biomarkers import Biomarkers, LevelBiomarkers
from engine.clinical import ClinicalSettings, ImportRequest, import_clinical
from engine.errors import VfriskError
from engine.evaluation import SurvivalTarget, harrell_c
from engine.store import Store
from engine.store.biomarker_tables import insert_biomarkers
from engine.store.experiment_tables import comparator_frame
from engine.synth.cohort import SynthRequest, synthesize
from models.comparators import (
    BIOMARKER_COVARIATES,
    CLINICAL_COVARIATES,
    IMAGE_COVARIATE,
    CoxSettings,
    fit_comparators,
    fit_cox,
    image_logit,
    l1_scores,
)

LEVELS = ("T12", "L1", "L2", "L3", "L4")
#: Coefficients of ``coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio,
#: data = Rossi, ties = "efron")`` in R (Fox & Weisberg, "Cox proportional-hazards
#: regression for survival data in R", 2018, table on p. 3).
ROSSI_R = {
    "fin": -0.37942, "age": -0.05744, "race": 0.31390, "wexp": -0.14980, "mar": -0.43370,
    "paro": -0.08487, "prio": 0.09150,
}  # fmt: skip
ROSSI_COVARIATES = tuple(ROSSI_R)


def _rossi_frame() -> pd.DataFrame:
    from lifelines.datasets import load_rossi

    d = load_rossi()
    return d.rename(columns={"week": "followup_years"}).assign(event_type=d["arrest"])


def test_cox_fit_against_r_on_rossi() -> None:
    fit = fit_cox(
        _rossi_frame(), ROSSI_COVARIATES, name="rossi", settings=CoxSettings(penalizer=0.0)
    )
    assert fit.n == 432 and fit.events == 114
    for name, beta in ROSSI_R.items():
        assert fit.coefficients[name] == pytest.approx(beta, abs=1e-4), name  # R prints 5 dp


def test_cox_fit_against_lifelines_with_deaths_and_missing_values() -> None:
    from lifelines import CoxPHFitter

    frame = _rossi_frame()
    rng = np.random.default_rng(0)
    censored = np.flatnonzero(frame["event_type"].to_numpy() == 0)
    frame.loc[rng.choice(censored, 40, replace=False), "event_type"] = 2  # deaths
    frame.loc[rng.choice(len(frame), 25, replace=False), "prio"] = np.nan
    settings = CoxSettings(penalizer=0.05, max_followup=5)
    fit = fit_cox(frame, ROSSI_COVARIATES, name="rossi", settings=settings)

    # reference: lifelines directly on the complete cases, deaths coded as censored
    cc = frame.dropna(subset=["prio"]).copy()
    cc["arrest"] = (cc["event_type"] == 1).astype(int)
    ref = CoxPHFitter(penalizer=0.05).fit(
        cc[[*ROSSI_COVARIATES, "followup_years", "arrest"]], "followup_years", "arrest"
    )
    assert fit.n == len(cc) == 407 and fit.events == int(cc["arrest"].sum())
    for name in ROSSI_COVARIATES:
        assert fit.coefficients[name] == pytest.approx(ref.params_[name], abs=1e-8)

    scored = fit.predict(frame, settings.max_followup)
    ok = frame["prio"].notna().to_numpy()
    assert np.isnan(scored.score[~ok]).all() and np.isnan(scored.risk[~ok]).all()
    x = frame.loc[ok, list(ROSSI_COVARIATES)]
    np.testing.assert_allclose(scored.score[ok], ref.predict_log_partial_hazard(x), rtol=1e-10)
    surv = ref.predict_survival_function(x, times=[1, 2, 3, 4, 5]).to_numpy().T
    np.testing.assert_allclose(scored.risk[ok], 1.0 - surv, rtol=1e-10)
    assert (np.diff(scored.risk[ok], axis=1) >= 0).all()  # cumulative risk never falls


def test_cox_refuses_too_few_events() -> None:
    frame = _rossi_frame().iloc[:40]
    with pytest.raises(VfriskError) as err:
        fit_cox(frame, ROSSI_COVARIATES, name="tiny", settings=CoxSettings(min_events=50))
    assert err.value.code == "comparator_not_fitted" and "fractures among 40" in err.value.message


def test_l1_thresholds_by_hand() -> None:
    hu = [80.0, 110.0, 110.01, 150.0, 160.0, 200.0, np.nan]
    le110, le160, cont = l1_scores(pd.DataFrame({"l1_trabecular_hu": hu}), (110.0, 160.0))
    assert (le110.name, le160.name, cont.name) == ("l1_hu_le110", "l1_hu_le160", "l1_hu")
    assert le110.label == "L1 HU <= 110" and le160.risk is None
    np.testing.assert_array_equal(le110.score, [1, 1, 0, 0, 0, 0, np.nan])
    np.testing.assert_array_equal(le160.score, [1, 1, 1, 1, 1, 0, np.nan])
    np.testing.assert_array_equal(cont.score, [-80, -110, -110.01, -150, -160, -200, np.nan])


def test_image_logit_round_trips_and_clips() -> None:
    p = np.array([0.1, 0.5, 0.9, 0.0, 1.0, np.nan])
    z = image_logit(p)
    np.testing.assert_allclose(1 / (1 + np.exp(-z[:3])), p[:3])
    assert np.isfinite(z[3:5]).all() and np.isnan(z[5])


# -- a generated cohort through the real store -----------------------------------------


def _biomarkers(uid: str, truth: pd.Series, rng: np.random.Generator) -> Biomarkers:
    """Biomarkers as the engine would measure them: the truth plus measurement noise."""
    levels = []
    for lv in LEVELS:
        levels.append(
            LevelBiomarkers(
                level=lv,
                present=True,
                trabecular_hu=float(truth[f"hu_{lv}"] + rng.normal(0, 5)),
                genant_grade=int(truth[f"grade_{lv}"]),
                psoas_area_cm2=float(truth["psoas_area_cm2"]),
                paraspinal_area_cm2=float(truth["paraspinal_area_cm2"]),
            )
        )
    hu = [b.trabecular_hu for b in levels]
    l3_area = float(truth["psoas_area_cm2"] + truth["paraspinal_area_cm2"]) * 2
    height = float(truth["height_cm"]) if "height_cm" in truth else math.nan
    return Biomarkers(
        series_uid=uid,
        levels=tuple(levels),
        mean_trabecular_hu=float(np.mean(hu)),
        l1_trabecular_hu=hu[1],
        l3_muscle_area_cm2=l3_area,
        l3_muscle_hu=float((truth["psoas_hu"] + truth["paraspinal_hu"]) / 2 + rng.normal(0, 2)),
        smi_cm2_m2=l3_area / (height / 100) ** 2,
        height_cm=height,
        contrast=False,
        flags=(),
    )


@pytest.fixture(scope="module")
def cohort_frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """1,600 generated patients (dev + ext_a) in DuckDB: clinical import, links, biomarkers.

    Tables only; selected ``series`` rows stand in for the indexed scans so the real
    importer links each patient, and the biomarkers (truth plus noise) are written with the
    real ``insert_biomarkers``. BMI is blanked for 30 patients (complete cases).
    """
    root = tmp_path_factory.mktemp("comparators")
    out = root / "cohort"
    synthesize(
        SynthRequest(out=out, patients=1600, sites="dev:0.5,ext_a:0.5", seed=11, tables_only=True)
    )
    clinical = pd.read_csv(out / "clinical.csv")
    clinical.loc[clinical.index[::53][:30], "bmi"] = np.nan
    clinical.to_csv(root / "clinical.csv", index=False)
    truth = pd.read_csv(out / "truth" / "patients.csv").set_index("patient_id")
    store = Store(root / "vf.duckdb")
    uids = [f"1.2.826.0.9.{i}" for i in range(len(clinical))]
    series = pd.DataFrame(
        {
            "series_uid": uids,
            "study_uid": [u.replace(".9.", ".8.") for u in uids],
            "patient_id": clinical["patient_id"],
            "study_date": pd.to_datetime(clinical["scan_date"]).dt.date,
            "eligible": True,
            "selected": True,
            "content_hash": "h",
        }
    )
    with store.write() as con:
        con.register("_s", series)
        con.execute("INSERT INTO series BY NAME SELECT * FROM _s")
        con.unregister("_s")
    import_clinical(
        store, ImportRequest(file=root / "clinical.csv"), ClinicalSettings(), config_hash="t",
        run_id="import0",
    )  # fmt: skip
    rng = np.random.default_rng(5)
    records = [
        _biomarkers(uid, truth.loc[pid], rng)
        for uid, pid in zip(uids, clinical["patient_id"], strict=True)
    ]
    records = [r for i, r in enumerate(records) if i % 97 != 0]  # some scans never measured
    with store.write() as con:
        insert_biomarkers(con, records, preprocessing_version="pp1")
        # another version's rows must not be joined
        insert_biomarkers(con, records[:10], preprocessing_version="other")
    with store.read() as con:
        frame = comparator_frame(con, "pp1")
    return frame.assign(oracle_image=truth.loc[frame["patient_id"], "oracle_image_5y"].to_numpy())


def test_comparator_frame_joins_links_and_one_biomarker_version(cohort_frame) -> None:  # noqa: ANN001
    f = cohort_frame
    assert len(f) == 1600 and f["patient_id"].is_unique and f["series_uid"].notna().all()
    assert set(BIOMARKER_COVARIATES) <= set(f.columns)
    assert f["l1_trabecular_hu"].isna().sum() == len(range(0, 1600, 97))
    assert f["bmi"].isna().sum() == 30


def test_comparators_fit_on_dev_and_score_every_site(cohort_frame) -> None:  # noqa: ANN001
    f = cohort_frame
    settings = CoxSettings()
    result = fit_comparators(f, dev_sites=("dev",), settings=settings)
    names = [s.name for s in result.scores]
    assert names == [
        "frax_mof", "frax_hip", "cox_clinical", "l1_hu_le110", "l1_hu_le160", "l1_hu",
        "cox_biomarkers",
    ]  # fmt: skip
    assert "cox_combined: no image model risk" in result.notes[0]
    dev = f["site"] == "dev"
    clinical_fit = result.fits["cox_clinical"]
    complete = f.loc[dev, ["age", "sex", "bmi"]].notna().all(axis=1)
    assert clinical_fit.n == int(complete.sum()) < int(dev.sum())  # dev complete cases only
    assert set(clinical_fit.covariates) <= set(CLINICAL_COVARIATES)
    # the generator's fracture hazard rises with age, prior fracture and glucocorticoids
    for factor in ("age", "prior_fracture", "glucocorticoids"):
        assert clinical_fit.coefficients[factor] > 0, factor
    bio = result.fits["cox_biomarkers"]
    assert bio.coefficients["max_genant_grade"] > 0  # prevalent fractures predict new ones
    assert bio.coefficients["mean_trabecular_hu"] + bio.coefficients["l1_trabecular_hu"] < 0

    clin = result.get("cox_clinical")
    assert np.isnan(clin.score[f["bmi"].isna().to_numpy()]).all()
    assert np.isfinite(clin.score[f["bmi"].notna().to_numpy()]).all()
    r = clin.risk[np.isfinite(clin.score)]
    assert ((r >= 0) & (r <= 1)).all() and (np.diff(r, axis=1) >= 0).all()
    np.testing.assert_array_equal(result.get("frax_mof").score, f["frax_mof"].to_numpy(float))

    # external site, never seen by the fits: ranking as the generator says it should
    ext = (f["site"] == "ext_a").to_numpy()
    target = SurvivalTarget.from_arrays(f.loc[ext, "followup_years"], f.loc[ext, "event_type"])

    def c(score: np.ndarray) -> float:
        ok = np.isfinite(score[ext])
        return harrell_c(target.subset(ok), score[ext][ok], ci="none").estimate

    c_bio, c_hu = c(result.get("cox_biomarkers").score), c(result.get("l1_hu").score)
    c_clin, c_frax = c(clin.score), c(result.get("frax_mof").score)
    c_oracle = c(f["oracle_image"].to_numpy(float))
    assert 0.6 < c_hu < c_bio <= c_oracle + 0.02
    assert c_clin > 0.55 and c_frax > 0.55
    assert 0.5 < c(result.get("l1_hu_le160").score) < c_hu  # a cut-off loses ranking


def test_combined_model_uses_the_image_logit(cohort_frame) -> None:  # noqa: ANN001
    f = cohort_frame.assign(**{IMAGE_COVARIATE: image_logit(cohort_frame["oracle_image"])})
    result = fit_comparators(f, dev_sites=("dev",), settings=CoxSettings())
    combined = result.fits["cox_combined"]
    assert combined.coefficients[IMAGE_COVARIATE] > 0.5
    assert result.scores[-1].name == "cox_combined" and not result.notes


def test_too_few_dev_events_leave_a_note_not_a_failure(cohort_frame) -> None:  # noqa: ANN001
    f = cohort_frame
    tiny = pd.concat([f[f["site"] == "dev"].head(20), f[f["site"] == "ext_a"]])
    result = fit_comparators(tiny, dev_sites=("dev",), settings=CoxSettings(min_events=10))
    assert not result.fits
    assert [s.name for s in result.scores][:2] == ["frax_mof", "frax_hip"]
    assert any("cox_clinical" in n and "cox_min_events" in n for n in result.notes)


def test_cox_settings_refuse_bad_values() -> None:
    with pytest.raises(VfriskError):
        CoxSettings(penalizer=-1.0)
