"""Tests of the synthetic population and outcome model (engine.synth.population / outcome).

Every cohort is drawn with a fixed seed; the references are lifelines
(``concordance_index``, ``AalenJohansenFitter``), the closed-form Weibull competing-risk
CIF written out here, and the column list of ``sample_data/DATA_DICTIONARY.md``.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter
from lifelines.utils import concordance_index

from engine.errors import VfriskError
from engine.synth import outcome
from engine.synth.population import (
    CLINICAL_COLUMNS,
    HORIZONS,
    LEVELS_ALL,
    LEVELS_MODEL,
    TRUTH_COLUMNS,
    simulate_population,
)
from engine.synth.profiles import load_profiles

DICTIONARY = Path(__file__).resolve().parents[3] / "sample_data" / "DATA_DICTIONARY.md"
EXTERNAL = {"ext_a": 1.0, "ext_b": 1.0}
BINARY = (
    "prior_fracture",
    "parent_hip_fracture",
    "current_smoking",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "secondary_osteoporosis",
    "alcohol_3plus",
    "prevalent_vf",
    "incident_vf",
)


@pytest.fixture(scope="module")
def profiles():
    return load_profiles()


@pytest.fixture(scope="module")
def cohort(profiles) -> pd.DataFrame:
    return simulate_population(3000, {"dev": 0.6, "ext_a": 0.2, "ext_b": 0.2}, profiles, seed=11)


def _cindex(df: pd.DataFrame, risk_column: str) -> float:
    # Harrell's c, deaths treated as censored; reference call:
    # lifelines.utils.concordance_index(followup_years, -risk, event_type == 1)
    return concordance_index(
        df["followup_years"], -df[risk_column], (df["event_type"] == 1).astype(int)
    )


def _cumulative_incidence_5y(df: pd.DataFrame) -> float:
    # Aalen-Johansen estimate of P(fracture by 5 y) with death competing (lifelines).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines warns and jitters tied times
        ajf = AalenJohansenFitter(calculate_variance=False, seed=0)
        ajf.fit(df["followup_years"], df["event_type"], event_of_interest=1)
    cif = ajf.cumulative_density_.iloc[:, 0]
    return float(cif[cif.index <= 5.0].iloc[-1])


# --- determinism and layout -------------------------------------------------------------


def test_population_is_deterministic_for_a_seed(profiles):
    a = simulate_population(400, EXTERNAL, profiles, seed=3)
    b = simulate_population(400, EXTERNAL, profiles, seed=3)
    c = simulate_population(400, EXTERNAL, profiles, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a["age"].equals(c["age"])
    assert not a["followup_years"].equals(c["followup_years"])


def test_site_patients_do_not_depend_on_other_sites(profiles):
    alone = simulate_population(100, {"dev": 1.0}, profiles, seed=5)
    mixed = simulate_population(200, {"ext_a": 1.0, "dev": 1.0}, profiles, seed=5)
    dev = mixed[mixed["site"] == "dev"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, dev)


def test_allocation_is_largest_remainder_and_ids_are_ordered(profiles):
    df = simulate_population(7, {"dev": 1.0, "ext_a": 1.0, "ext_b": 1.0}, profiles, seed=0)
    assert df["site"].tolist() == ["dev"] * 3 + ["ext_a"] * 2 + ["ext_b"] * 2
    assert df["patient_id"].tolist() == [
        "VFDEV000001",
        "VFDEV000002",
        "VFDEV000003",
        "VFEXTA000001",
        "VFEXTA000002",
        "VFEXTB000001",
        "VFEXTB000002",
    ]
    df = simulate_population(10, {"dev": 0.6, "ext_a": 0.2, "ext_b": 0.2}, profiles, seed=0)
    assert df["site"].value_counts().to_dict() == {"dev": 6, "ext_a": 2, "ext_b": 2}


def test_columns_against_data_dictionary(cohort):
    assert CLINICAL_COLUMNS == (
        "patient_id", "site", "sex", "age", "height_cm", "weight_kg", "bmi", "prior_fracture",
        "parent_hip_fracture", "current_smoking", "glucocorticoids", "rheumatoid_arthritis",
        "secondary_osteoporosis", "alcohol_3plus", "prevalent_vf", "frax_mof", "frax_hip",
        "scan_date", "followup_years", "incident_vf", "event_type",
    )  # fmt: skip
    assert list(cohort.columns) == [*CLINICAL_COLUMNS, *TRUTH_COLUMNS]
    # the column tables sit between the title and "## How the population is drawn"
    text = DICTIONARY.read_text().split("## How the population is drawn")[0]
    documented = set()
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([A-Za-z0-9_<>]+)`\s*\|", line)
        if not m:
            continue
        name = m.group(1)
        if "<LEVEL>" in name:
            documented |= {name.replace("<LEVEL>", lv) for lv in LEVELS_ALL}
        elif "<t>" in name:
            documented |= {name.replace("<t>", str(t)) for t in HORIZONS}
        else:
            documented.add(name)
    assert documented == set(cohort.columns)
    assert cohort["patient_id"].is_unique


# --- clinical table ---------------------------------------------------------------------


def test_clinical_types_and_ranges(cohort, profiles):
    df = cohort
    assert set(df["sex"]) == {"F", "M"}
    assert df["age"].between(50, 90).all()
    assert np.allclose(df["age"], df["age"].round(1))
    bmi = df["weight_kg"] / (df["height_cm"] / 100) ** 2
    assert np.all(np.abs(bmi - df["bmi"]) <= 0.05 + 1e-9)
    assert df["height_cm"].between(130, 210).all()
    assert df["bmi"].between(15, 50).all()
    for col in (*BINARY, "event_type"):
        assert pd.api.types.is_integer_dtype(df[col]), col
    for col in BINARY:
        assert set(df[col].unique()) <= {0, 1}, col
    for col in ("frax_mof", "frax_hip"):
        assert df[col].between(0, 100).all(), col
    assert (df["frax_hip"] < df["frax_mof"]).mean() > 0.95
    assert all(isinstance(d, dt.date) for d in df["scan_date"])
    for site, group in df.groupby("site"):
        first, last = profiles[site].study_year_range
        years = np.array([d.year for d in group["scan_date"]])
        assert years.min() >= first and years.max() <= last, site
    assert (df["followup_years"] >= 0).all()
    assert np.allclose(df["followup_years"], df["followup_years"].round(2))


def test_risk_factor_prevalences_are_realistic(cohort):
    bands = {
        "prior_fracture": (0.13, 0.28),
        "parent_hip_fracture": (0.07, 0.13),
        "current_smoking": (0.08, 0.17),
        "glucocorticoids": (0.03, 0.09),
        "rheumatoid_arthritis": (0.02, 0.06),
        "secondary_osteoporosis": (0.06, 0.13),
        "alcohol_3plus": (0.02, 0.06),
    }
    for col, (lo, hi) in bands.items():
        assert lo <= cohort[col].mean() <= hi, (col, cohort[col].mean())
    # prior fracture rises with age and low bone density
    old = cohort["age"] >= 75
    low = cohort["hu_L1"] < 110
    assert cohort.loc[old, "prior_fracture"].mean() > cohort.loc[~old, "prior_fracture"].mean()
    assert cohort.loc[low, "prior_fracture"].mean() > cohort.loc[~low, "prior_fracture"].mean()


def test_event_type_consistent_with_times(cohort):
    df = cohort
    t_min = np.minimum(np.minimum(df["time_fracture"], df["time_death"]), df["time_censor"])
    assert np.allclose(df["followup_years"], np.round(t_min, 2))
    assert set(df["event_type"].unique()) <= {0, 1, 2}
    assert (df["incident_vf"] == (df["event_type"] == 1)).all()
    fx = df["event_type"] == 1
    death = df["event_type"] == 2
    cens = df["event_type"] == 0
    assert (df.loc[fx, "time_fracture"] == t_min[fx]).all()
    assert (df.loc[death, "time_death"] == t_min[death]).all()
    assert (df.loc[cens, "time_censor"] == t_min[cens]).all()
    assert df["time_censor"].max() <= 7.0
    assert fx.sum() > 0 and death.sum() > 0 and cens.sum() > 0


# --- image truth ------------------------------------------------------------------------


def test_genant_grades_shapes_and_height_loss_consistent(cohort):
    df = cohort
    for lv in LEVELS_ALL:
        grade, loss = df[f"grade_{lv}"], df[f"height_loss_{lv}"]
        shape, cement = df[f"shape_{lv}"], df[f"cement_{lv}"]
        assert set(grade.unique()) <= {0, 1, 2, 3}
        if lv not in LEVELS_MODEL:
            assert (grade == 0).all(), lv
        # Genant: grade 0 < 20 %, 1: 20-25 %, 2: 25-40 %, 3: > 40 % height loss
        assert loss[grade == 0].between(0, 0.15).all(), lv
        assert loss[grade == 1].between(0.20, 0.25).all(), lv
        assert loss[grade == 2].between(0.25, 0.40).all(), lv
        assert loss[grade == 3].between(0.40, 0.60).all(), lv
        assert ((shape == "") == (grade == 0)).all(), lv
        assert set(shape[grade > 0]) <= {"wedge", "biconcave", "crush"}, lv
        assert not cement[grade < 2].any(), lv
    grades = df[[f"grade_{lv}" for lv in LEVELS_MODEL]]
    assert (df["prevalent_vf"] == (grades > 0).any(axis=1)).all()
    shapes = pd.concat([df[f"shape_{lv}"] for lv in LEVELS_MODEL])
    counts = shapes[shapes != ""].value_counts()
    assert counts.idxmax() == "wedge"
    # fractures are more likely at the thoracolumbar junction and with low density
    rate = {lv: (df[f"grade_{lv}"] > 0).mean() for lv in LEVELS_MODEL}
    assert max(rate, key=rate.get) in ("T12", "L1")
    low = df["hu_L1"] < 100
    assert df.loc[low, "prevalent_vf"].mean() > 2 * df.loc[~low, "prevalent_vf"].mean()


def test_bone_hu_falls_with_age_against_numpy_polyfit(cohort):
    # reference: ordinary least squares slope, np.polyfit(age, hu, 1)[0], in HU/year
    for lv in ("L1", "L3"):
        slope = np.polyfit(cohort["age"], cohort[f"hu_{lv}"], 1)[0]
        assert -3.0 <= slope <= -1.0, (lv, slope)
    hu = cohort[[f"hu_{lv}" for lv in LEVELS_ALL]]
    assert hu.min().min() >= 0 and hu.max().max() <= 400
    assert 120 <= cohort["hu_L1"].mean() <= 170
    f, m = cohort["sex"] == "F", cohort["sex"] == "M"
    assert cohort.loc[f, "hu_L1"].mean() < cohort.loc[m, "hu_L1"].mean()
    gc = cohort["glucocorticoids"] == 1
    assert cohort.loc[gc, "hu_L1"].mean() < cohort.loc[~gc, "hu_L1"].mean()
    assert (cohort["hu_T12"] > cohort["hu_L4"]).mean() > 0.6


def test_muscle_within_reference_ranges_by_sex(cohort):
    f, m = cohort["sex"] == "F", cohort["sex"] == "M"
    psoas, para = cohort["psoas_area_cm2"], cohort["paraspinal_area_cm2"]
    assert psoas[f].between(5, 8).mean() > 0.6
    assert psoas[m].between(8, 12).mean() > 0.6
    assert para.between(15, 25).mean() > 0.6
    assert cohort["psoas_hu"].between(40, 55).mean() > 0.6
    assert cohort["paraspinal_hu"].between(35, 50).mean() > 0.5
    frail_old = (cohort["age"] >= 80) & (cohort["frailty"] > 1)
    assert 20 <= cohort.loc[frail_old, "paraspinal_hu"].mean() <= 38
    # muscle is only partly explained by bone
    r = np.corrcoef(cohort["hu_L1"], cohort["paraspinal_hu"])[0, 1]
    assert 0.0 < r < 0.5


def test_scanner_flags_follow_profile(profiles):
    df = simulate_population(4000, {"ext_a": 1.0}, profiles, seed=2)
    p = profiles["ext_a"]
    for col, rate in (
        ("contrast", p.p_contrast),
        ("bone_recon", p.p_bone_recon),
        ("derived", p.p_derived),
        ("miss_t12", p.p_miss_t12),
        ("miss_l4", p.p_miss_l4),
    ):
        assert df[col].dtype == bool, col
        assert abs(df[col].mean() - rate) < 0.025, col
    assert not (df["miss_t12"] & df["miss_l4"]).any()


# --- outcome model ----------------------------------------------------------------------


def _weibull_cif(lam_f, lam_d, t, k=1.1):
    # closed form: lam_f / (lam_f + lam_d) * (1 - exp(-(lam_f + lam_d) * t**k))
    total = lam_f + lam_d
    return lam_f / total * (1.0 - np.exp(-total * t**k))


def _recomputed_covariates(df: pd.DataFrame) -> dict[str, np.ndarray]:
    # written from DATA_DICTIONARY.md, independently of engine.synth.outcome.covariates
    female = (df["sex"] == "F").to_numpy(float)
    mean_hu = df[[f"hu_{lv}" for lv in LEVELS_MODEL]].to_numpy().mean(axis=1)
    sdi = df[[f"grade_{lv}" for lv in LEVELS_MODEL]].to_numpy().sum(axis=1)
    area = (df["psoas_area_cm2"] + df["paraspinal_area_cm2"]).to_numpy()
    mhu = (
        df["psoas_hu"] * df["psoas_area_cm2"] + df["paraspinal_hu"] * df["paraspinal_area_cm2"]
    ).to_numpy() / area
    x = {
        "age_z": (df["age"].to_numpy() - 70) / 8,
        "female": female,
        "male": 1 - female,
        "bone_z": (mean_hu - 130) / 40,
        "prevalent_any": (sdi > 0).astype(float),
        "sdi": sdi.astype(float),
        "muscle_area_z": np.log(area / np.where(female == 1, 25.5, 32.0)) / 0.15,
        "muscle_hu_z": (mhu - 42) / 7,
        "frailty": df["frailty"].to_numpy(),
    }
    for col in BINARY[:6]:
        x[col] = df[col].to_numpy(float)
    return x


def test_oracles_against_closed_form_weibull_cif(cohort, profiles):
    df = cohort
    x = _recomputed_covariates(df)
    log_hr = np.log([profiles[s].fracture_hazard_ratio for s in df["site"]])
    ref = {**outcome.IMAGE_REFERENCE}
    image_terms = ("bone_z", "prevalent_any", "sdi", "muscle_area_z", "muscle_hu_z")
    for kind in ("full", "image", "bone"):
        if kind == "full":
            xs, site = x, log_hr
        else:
            keep = image_terms if kind == "image" else image_terms[:3]
            xs = {k: np.full(len(df), v) for k, v in ref.items()}
            xs.update(muscle_area_z=np.zeros(len(df)), muscle_hu_z=np.zeros(len(df)))
            xs.update({k: x[k] for k in keep})
            site = np.zeros(len(df))
        log_f = outcome.FRACTURE_COEFS["intercept"] + site
        log_f = log_f + sum(
            b * xs[k] for k, b in outcome.FRACTURE_COEFS.items() if k != "intercept"
        )
        log_d = outcome.DEATH_COEFS["intercept"]
        log_d = log_d + sum(b * xs[k] for k, b in outcome.DEATH_COEFS.items() if k != "intercept")
        if kind == "full":
            np.testing.assert_allclose(df["lambda_fracture"], np.exp(log_f), rtol=1e-9)
            np.testing.assert_allclose(df["lambda_death"], np.exp(log_d), rtol=1e-9)
        for t in HORIZONS:
            expected = _weibull_cif(np.exp(log_f), np.exp(log_d), t, outcome.WEIBULL_SHAPE)
            np.testing.assert_allclose(df[f"oracle_{kind}_{t}y"], expected, rtol=1e-9)


def test_oracles_are_probabilities_non_decreasing_in_time(cohort):
    for kind in ("full", "image", "bone"):
        risk = cohort[[f"oracle_{kind}_{t}y" for t in HORIZONS]].to_numpy()
        assert ((risk >= 0) & (risk <= 1)).all(), kind
        assert (np.diff(risk, axis=1) >= 0).all(), kind


def test_cumulative_incidence_against_numeric_integral():
    # reference: trapezoidal integral of h_f(s) * S(s) ds with the Weibull hazards
    lam_f, lam_d, k = np.array([0.02, 0.1]), np.array([0.03, 0.01]), outcome.WEIBULL_SHAPE
    s = np.linspace(1e-9, 4.0, 200_001)[:, None]
    dens = lam_f * k * s ** (k - 1) * np.exp(-(lam_f + lam_d) * s**k)
    integral = np.trapezoid(dens, s, axis=0)
    np.testing.assert_allclose(outcome.cumulative_incidence(lam_f, lam_d, 4.0), integral, rtol=1e-4)


def test_discrimination_against_lifelines_small_cohort(profiles):
    df = simulate_population(3000, EXTERNAL, profiles, seed=0)
    c = {k: _cindex(df, f"oracle_{k}_5y") for k in ("full", "image", "bone")}
    c_frax = _cindex(df, "frax_mof")
    assert 0.70 <= c["full"] <= 0.86, c
    assert 0.56 <= c_frax <= 0.74, c_frax
    assert c["full"] > c["image"] > c["bone"] > c_frax - 0.05, (c, c_frax)
    assert 0.05 <= _cumulative_incidence_5y(df) <= 0.20


@pytest.mark.slow
def test_incidence_and_discrimination_against_lifelines_20k(profiles):
    t0 = time.perf_counter()
    ext = simulate_population(20_000, EXTERNAL, profiles, seed=2024)
    assert time.perf_counter() - t0 < 5.0
    dev = simulate_population(20_000, {"dev": 1.0}, profiles, seed=2024)
    for name, df in (("external", ext), ("dev", dev)):
        cif5 = _cumulative_incidence_5y(df)
        c = {k: round(_cindex(df, f"oracle_{k}_5y"), 3) for k in ("full", "image", "bone")}
        c_frax = _cindex(df, "frax_mof")
        print(f"{name}: CIF5={cif5:.3f} c={c} c_frax={c_frax:.3f}")
        # the Aalen-Johansen estimate agrees with the mean oracle risk (tolerance 0.015)
        assert abs(cif5 - df["oracle_full_5y"].mean()) < 0.015, name
        assert c["full"] - c["image"] > 0.01, (name, c)
        assert c["image"] - c["bone"] > 0.01, (name, c)
        assert c["bone"] > c_frax, (name, c, c_frax)
        if name == "external":
            assert 0.08 <= cif5 <= 0.15, cif5
            assert 0.75 <= c["full"] <= 0.80, c
            assert 0.62 <= c_frax <= 0.68, c_frax
        else:  # older site: more fractures, similar discrimination
            assert 0.12 <= cif5 <= 0.30, cif5
            assert 0.74 <= c["full"] <= 0.82, c


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "weights", "seed", "code"),
    [
        (10, {"nowhere": 1.0}, 0, "bad_sites_spec"),
        (10, {}, 0, "bad_sites_spec"),
        (10, {"dev": 0.0}, 0, "bad_sites_spec"),
        (10, {"dev": -1.0}, 0, "bad_sites_spec"),
        (0, {"dev": 1.0}, 0, "bad_argument"),
        (-5, {"dev": 1.0}, 0, "bad_argument"),
        (2.5, {"dev": 1.0}, 0, "bad_argument"),
        (True, {"dev": 1.0}, 0, "bad_argument"),
        (10, {"dev": 1.0}, -1, "bad_argument"),
    ],
)
def test_bad_input_raises_vfrisk_error(profiles, n, weights, seed, code):
    with pytest.raises(VfriskError) as info:
        simulate_population(n, weights, profiles, seed=seed)
    assert info.value.code == code
    assert info.value.message
