"""The synthetic patient population: clinical table, image truth and outcomes, one row each.

Everything here is SIMULATED; no patient data was used. :func:`simulate_population` draws
for each site of a weighted site mix (``engine.synth.profiles``) the patients' demographics,
FRAX risk factors, true trabecular HU per level, prevalent Genant fractures, L3 muscle,
scanner flags, latent event times and the oracle risks of the outcome model in
``engine.synth.outcome``. The columns, ranges and coefficients are documented in
``sample_data/DATA_DICTIONARY.md``.

Determinism: each site draws from its own ``numpy.random.Generator`` seeded by
``SeedSequence([seed, crc32(site name)])``, so a site's patients do not change when other
sites are added to the mix, and the same ``(n, weights, seed)`` gives the same frame.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from engine.errors import VfriskError
from engine.synth import outcome
from engine.synth.profiles import SiteProfile

__all__ = [
    "CLINICAL_COLUMNS",
    "HORIZONS",
    "LEVELS_ALL",
    "LEVELS_MODEL",
    "TRUTH_COLUMNS",
    "simulate_population",
]

LEVELS_ALL = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
LEVELS_MODEL = ("T12", "L1", "L2", "L3", "L4")
HORIZONS = (1, 2, 3, 4, 5)  # years

CLINICAL_COLUMNS = (
    "patient_id",
    "site",
    "sex",
    "age",
    "height_cm",
    "weight_kg",
    "bmi",
    "prior_fracture",
    "parent_hip_fracture",
    "current_smoking",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "secondary_osteoporosis",
    "alcohol_3plus",
    "prevalent_vf",
    "frax_mof",
    "frax_hip",
    "scan_date",
    "followup_years",
    "incident_vf",
    "event_type",
)

TRUTH_COLUMNS = (
    *(f"hu_{lv}" for lv in LEVELS_ALL),
    *(f"grade_{lv}" for lv in LEVELS_ALL),
    *(f"shape_{lv}" for lv in LEVELS_ALL),
    *(f"height_loss_{lv}" for lv in LEVELS_ALL),
    *(f"cement_{lv}" for lv in LEVELS_ALL),
    "psoas_area_cm2",
    "paraspinal_area_cm2",
    "psoas_hu",
    "paraspinal_hu",
    "frailty",
    "contrast",
    "bone_recon",
    "derived",
    "miss_t12",
    "miss_l4",
    "lambda_fracture",
    "lambda_death",
    "time_fracture",
    "time_death",
    "time_censor",
    *(f"oracle_{kind}_{t}y" for kind in ("full", "image", "bone") for t in HORIZONS),
)
"""Simulation truth beside the clinical table (image renderer inputs and outcome truth)."""

_RISK_FACTORS = (
    "prior_fracture",
    "parent_hip_fracture",
    "current_smoking",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "secondary_osteoporosis",
    "alcohol_3plus",
)
# Trabecular HU falls slightly from thoracic to lower lumbar levels; offsets relative to L1.
_LEVEL_HU_OFFSET = dict(
    zip(LEVELS_ALL, (14.0, 10.0, 6.0, 0.0, -3.0, -6.0, -9.0, -12.0), strict=True)
)
# Log-odds offsets of a prevalent fracture per level: the thoracolumbar junction dominates.
_LEVEL_VF_OFFSET = dict(zip(LEVELS_MODEL, (0.45, 0.55, 0.0, -0.25, -0.4), strict=True))
_SHAPES = ("wedge", "biconcave", "crush")
_SHAPE_P = (0.6, 0.25, 0.15)
# Genant height-loss bands per grade (fraction), kept off the exact thresholds 0.20/0.25/0.40.
_HEIGHT_LOSS_BAND = {1: (0.201, 0.249), 2: (0.251, 0.399), 3: (0.401, 0.60)}
_P_CEMENT = 0.05  # vertebroplasty in a grade >= 2 body


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _bernoulli(rng: np.random.Generator, eta: np.ndarray) -> np.ndarray:
    """0/1 int draws with log-odds ``eta``, shape (n,)."""
    return (rng.random(len(eta)) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)


def _allocate(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` patients over sites by largest remainder (ties: order of ``weights``)."""
    names = list(weights)
    w = np.array([weights[k] for k in names], dtype=float)
    share = n * w / w.sum()
    counts = np.floor(share).astype(int)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return dict(zip(names, counts.tolist(), strict=True))


def _site_prefix(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _validate(
    n: int, weights: Mapping[str, float], profiles: Mapping[str, SiteProfile], seed: int
) -> None:
    if not _is_int(n) or n <= 0:
        raise VfriskError("bad_argument", f"number of patients must be an integer > 0, got {n!r}")
    if not _is_int(seed) or seed < 0:
        raise VfriskError("bad_argument", f"seed must be an integer >= 0, got {seed!r}")
    if not weights:
        raise VfriskError("bad_sites_spec", "no site given; name at least one site with a weight")
    for name, w in weights.items():
        if name not in profiles:
            raise VfriskError(
                "bad_sites_spec", f"unknown site {name!r}; known sites are {sorted(profiles)}"
            )
        if not isinstance(w, int | float | np.number) or not np.isfinite(w) or w <= 0:
            raise VfriskError("bad_sites_spec", f"weight of site {name!r} must be > 0, got {w!r}")
    prefixes = [_site_prefix(name) for name in weights]
    if "" in prefixes or len(set(prefixes)) != len(prefixes):
        raise VfriskError(
            "bad_sites_spec",
            f"site names {sorted(weights)} do not give distinct patient-id prefixes "
            "(letters and digits of the name, upper-cased); rename a site",
        )


def _demographics(n: int, p: SiteProfile, rng: np.random.Generator) -> dict[str, np.ndarray]:
    female = rng.random(n) < p.female_fraction
    age = np.round(np.clip(rng.normal(p.age_mean, p.age_sd, n), 50.0, 90.0), 1)
    age_z = (age - 70.0) / 8.0
    frailty = np.round(0.15 * age_z + np.sqrt(1 - 0.15**2) * rng.standard_normal(n), 3)
    height = np.where(female, 161.0, 174.5) + np.where(female, 6.5, 7.0) * rng.standard_normal(n)
    height = np.round(height - 0.12 * (age - 50.0), 1)
    bmi = np.where(female, 26.8, 27.0) + np.where(female, 4.8, 4.0) * rng.standard_normal(n)
    bmi = np.clip(bmi - 0.6 * frailty, 16.0, 48.0)
    weight = np.round(bmi * (height / 100.0) ** 2, 1)
    bmi = np.round(weight / (height / 100.0) ** 2, 1)
    return {
        "female": female,
        "age": age,
        "age_z": age_z,
        "frailty": frailty,
        "height_cm": height,
        "weight_kg": weight,
        "bmi": bmi,
    }


def _clinical_factors(d: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict:
    """FRAX risk factors other than prior fracture (which depends on bone, drawn later)."""
    n = len(d["age"])
    male = (~d["female"]).astype(float)
    fr, age_z = d["frailty"], d["age_z"]
    return {
        "parent_hip_fracture": _bernoulli(rng, np.full(n, _logit(0.10))),
        "current_smoking": _bernoulli(rng, _logit(0.12) - 0.4 * age_z + 0.4 * male),
        "glucocorticoids": _bernoulli(rng, _logit(0.055) + 0.3 * fr),
        "rheumatoid_arthritis": _bernoulli(rng, _logit(0.03) + 0.5 * (1 - male)),
        "secondary_osteoporosis": _bernoulli(
            rng, _logit(0.085) + 0.4 * fr + 0.03 * (d["bmi"] - 27.0)
        ),
        "alcohol_3plus": _bernoulli(rng, _logit(0.022) + 1.0 * male),
    }


def _bone_hu(
    d: Mapping[str, np.ndarray],
    rf: Mapping[str, np.ndarray],
    p: SiteProfile,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """True trabecular HU per level: ~2 HU/year loss, lower in women, low BMI, steroids."""
    n = len(d["age"])
    core = (
        200.0
        - 2.0 * (d["age"] - 50.0)
        - 10.0 * d["female"]
        + 1.8 * (d["bmi"] - 27.0)
        - 18.0 * rf["glucocorticoids"]
        - 8.0 * rf["rheumatoid_arthritis"]
        - 8.0 * rf["secondary_osteoporosis"]
        - 6.0 * rf["current_smoking"]
        - 5.0 * rf["alcohol_3plus"]
        - 8.0 * d["frailty"]
        + p.bmd_shift_hu
        + 45.0 * rng.standard_normal(n)
    )
    return {
        lv: np.round(np.clip(core + off + 7.0 * rng.standard_normal(n), 30.0, 320.0), 1)
        for lv, off in _LEVEL_HU_OFFSET.items()
    }


def _vertebrae(
    d: Mapping[str, np.ndarray],
    gc: np.ndarray,
    hu: Mapping[str, np.ndarray],
    p: SiteProfile,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Prevalent Genant grades, shapes, height loss and cement per level."""
    n = len(d["age"])
    cluster = 0.8 * rng.standard_normal(n)  # fractures cluster within a patient
    base = _logit(0.015) + 0.2 * d["age_z"] + 0.3 * gc + np.log(p.prevalent_ratio) + cluster
    out: dict[str, np.ndarray] = {}
    for lv in LEVELS_ALL:
        hu_z = (hu[lv] - 130.0) / 40.0
        grade = np.zeros(n, dtype=np.int64)
        if lv in LEVELS_MODEL:
            fractured = rng.random(n) < 1.0 / (
                1.0 + np.exp(-(base + _LEVEL_VF_OFFSET[lv] - 1.1 * hu_z))
            )
            severity = rng.standard_normal(n) - 0.5 * hu_z
            grade = np.where(fractured, 1 + (severity > 0.2) + (severity > 1.2), 0).astype(np.int64)
        loss = 0.15 * rng.beta(1.5, 4.0, n)
        for g, (lo, hi) in _HEIGHT_LOSS_BAND.items():
            loss = np.where(grade == g, rng.uniform(lo, hi, n), loss)
        shape = np.asarray(_SHAPES, dtype=object)[rng.choice(3, size=n, p=_SHAPE_P)]
        out[f"grade_{lv}"] = grade
        out[f"shape_{lv}"] = np.where(grade > 0, shape, "").astype(object)
        out[f"height_loss_{lv}"] = np.round(loss, 3)
        out[f"cement_{lv}"] = (grade >= 2) & (rng.random(n) < _P_CEMENT)
    return out


def _muscle(d: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """L3 psoas and paraspinal area (one side, cm2) and attenuation (HU)."""
    n = len(d["age"])
    female, fr, age_z = d["female"], d["frailty"], d["age_z"]
    quality = rng.standard_normal(n)  # muscle factor independent of bone
    log_size = 0.012 * (d["bmi"] - 27.0) - 0.10 * fr - 0.03 * age_z + 0.10 * quality
    psoas = np.where(female, 6.5, 10.0) * np.exp(log_size + 0.08 * rng.standard_normal(n))
    para = np.where(female, 18.0, 22.0) * np.exp(log_size + 0.08 * rng.standard_normal(n))
    fat = d["bmi"] - 27.0
    psoas_hu = 48.0 - 1.2 * age_z - 2.5 * fr - 0.25 * fat + 2.5 * quality
    para_hu = 43.0 - 1.5 * age_z - 3.5 * fr - 0.4 * fat + 3.0 * quality
    return {
        "psoas_area_cm2": np.round(psoas, 2),
        "paraspinal_area_cm2": np.round(para, 2),
        "psoas_hu": np.round(np.clip(psoas_hu + 3.0 * rng.standard_normal(n), 5.0, 70.0), 1),
        "paraspinal_hu": np.round(np.clip(para_hu + 4.0 * rng.standard_normal(n), 0.0, 65.0), 1),
    }


def _scanner(n: int, p: SiteProfile, rng: np.random.Generator) -> dict[str, np.ndarray]:
    miss_t12 = rng.random(n) < p.p_miss_t12
    # conditional on not missing T12, so the marginal rate of miss_l4 stays p_miss_l4
    p_l4 = min(1.0, p.p_miss_l4 / max(1e-12, 1.0 - p.p_miss_t12))
    return {
        "contrast": rng.random(n) < p.p_contrast,
        "bone_recon": rng.random(n) < p.p_bone_recon,
        "derived": rng.random(n) < p.p_derived,
        "miss_t12": miss_t12,
        "miss_l4": ~miss_t12 & (rng.random(n) < p_l4),
    }


def _scan_dates(n: int, p: SiteProfile, rng: np.random.Generator) -> np.ndarray:
    first = np.datetime64(f"{p.study_year_range[0]}-01-01", "D")
    last = np.datetime64(f"{p.study_year_range[1]}-12-31", "D")
    days = rng.integers(0, int((last - first).astype(int)) + 1, size=n)
    return (first + days).astype(object)  # datetime.date


def _simulate_site(n: int, p: SiteProfile, prefix: str, rng: np.random.Generator) -> pd.DataFrame:
    d = _demographics(n, p, rng)
    rf = _clinical_factors(d, rng)
    hu = _bone_hu(d, rf, p, rng)
    vb = _vertebrae(d, rf["glucocorticoids"], hu, p, rng)
    mu = _muscle(d, rng)
    sc = _scanner(n, p, rng)
    dates = _scan_dates(n, p, rng)

    sdi = sum(vb[f"grade_{lv}"] for lv in LEVELS_MODEL)
    mean_hu = np.mean([hu[lv] for lv in LEVELS_MODEL], axis=0)
    hu_z = (mean_hu - 130.0) / 40.0
    rf["prior_fracture"] = _bernoulli(
        rng,
        _logit(0.14)
        + 0.25 * d["age_z"]
        - 0.5 * hu_z
        + 0.8 * (sdi > 0)
        + 0.3 * rf["glucocorticoids"],
    )

    muscle_area = mu["psoas_area_cm2"] + mu["paraspinal_area_cm2"]
    muscle_hu = (
        mu["psoas_hu"] * mu["psoas_area_cm2"] + mu["paraspinal_hu"] * mu["paraspinal_area_cm2"]
    ) / muscle_area
    x = outcome.covariates(
        age=d["age"],
        female=d["female"],
        mean_hu=mean_hu,
        sdi=sdi,
        muscle_area_cm2=muscle_area,
        muscle_hu=muscle_hu,
    )
    x.update({k: rf[k].astype(float) for k in _RISK_FACTORS})
    x["frailty"] = d["frailty"]
    log_site_hr = np.full(n, np.log(p.fracture_hazard_ratio))

    oracles = {}
    for kind in ("full", "image", "bone"):
        log_f, log_d = outcome.log_hazards(x, log_site_hr, kind)
        lam_f, lam_d = np.exp(log_f), np.exp(log_d)
        if kind == "full":
            lam_f_true, lam_d_true = lam_f, lam_d
        for t in HORIZONS:
            oracles[f"oracle_{kind}_{t}y"] = outcome.cumulative_incidence(lam_f, lam_d, t)
    t_f, t_d, t_c = outcome.simulate_times(lam_f_true, lam_d_true, rng)
    t_obs = np.minimum(np.minimum(t_f, t_d), t_c)
    event_type = np.where(t_obs == t_c, 0, np.where(t_f < t_d, 1, 2)).astype(np.int64)

    frax_in = {"age": d["age"], "female": d["female"].astype(float), "bmi": d["bmi"]}
    frax_in.update({k: rf[k] for k in _RISK_FACTORS})

    cols: dict[str, object] = {
        "patient_id": [f"VF{prefix}{i:06d}" for i in range(1, n + 1)],
        "site": np.full(n, p.name, dtype=object),
        "sex": np.where(d["female"], "F", "M").astype(object),
        "age": d["age"],
        "height_cm": d["height_cm"],
        "weight_kg": d["weight_kg"],
        "bmi": d["bmi"],
        **{k: rf[k] for k in _RISK_FACTORS},
        "prevalent_vf": (sdi > 0).astype(np.int64),
        "frax_mof": outcome.frax_like(frax_in, outcome.FRAX_MOF_COEFS),
        "frax_hip": outcome.frax_like(frax_in, outcome.FRAX_HIP_COEFS),
        "scan_date": dates,
        "followup_years": np.round(t_obs, 2),
        "incident_vf": (event_type == 1).astype(np.int64),
        "event_type": event_type,
        **{f"hu_{lv}": hu[lv] for lv in LEVELS_ALL},
        **vb,
        **mu,
        "frailty": d["frailty"],
        **sc,
        "lambda_fracture": lam_f_true,
        "lambda_death": lam_d_true,
        "time_fracture": t_f,
        "time_death": t_d,
        "time_censor": t_c,
        **oracles,
    }
    return pd.DataFrame(cols, columns=[*CLINICAL_COLUMNS, *TRUTH_COLUMNS])


def simulate_population(
    n: int, weights: dict[str, float], profiles: dict[str, SiteProfile], seed: int
) -> pd.DataFrame:
    """Simulate ``n`` synthetic patients over a weighted site mix.

    Parameters
    ----------
    n : int
        Number of patients, > 0. Site ``s`` gets ``n * w_s / sum(w)`` rounded by largest
        remainder.
    weights : dict of str to float
        Site name to relative weight (> 0), e.g. from ``parse_sites_spec``.
    profiles : dict of str to SiteProfile
        Site profiles, e.g. from ``load_profiles``.
    seed : int
        Seed (>= 0) of every random draw; equal arguments give an identical frame.

    Returns
    -------
    pandas.DataFrame, shape (n, len(CLINICAL_COLUMNS) + len(TRUTH_COLUMNS))
        One row per patient, ordered by site (order of ``weights``) then index; columns
        :data:`CLINICAL_COLUMNS` then :data:`TRUTH_COLUMNS`. ``patient_id`` is
        ``VF{SITE}{index:06d}`` with the site name's letters and digits upper-cased and a
        1-based index within the site (``VFDEV000001``).

    Raises
    ------
    VfriskError
        ``bad_argument`` if ``n`` is not a positive integer or ``seed`` is not an integer
        >= 0; ``bad_sites_spec`` for an
        unknown site, a weight <= 0 or no site.
    """
    _validate(n, weights, profiles, seed)
    frames = []
    for name, n_site in _allocate(int(n), weights).items():
        if n_site == 0:
            continue
        ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())])
        frames.append(
            _simulate_site(n_site, profiles[name], _site_prefix(name), np.random.default_rng(ss))
        )
    return pd.concat(frames, ignore_index=True)
