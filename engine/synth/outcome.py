"""Outcome model of the synthetic cohort: hazards, latent times, oracle risks, FRAX-like scores.

Everything here is SIMULATED. The model is a pair of cause-specific Weibull hazards with a
shared shape ``k`` (:data:`WEIBULL_SHAPE`), one for incident vertebral fracture (VF) and one
for death before fracture::

    h_j(t) = lam_j * k * t**(k - 1),        Lambda_j(t) = lam_j * t**k,   j in {f, d}

so the cumulative incidence of fracture with death as a competing risk has the closed form
(:func:`cumulative_incidence`)::

    CIF_f(t) = lam_f / (lam_f + lam_d) * (1 - exp(-(lam_f + lam_d) * t**k))

``log lam_f`` and ``log lam_d`` are linear in standardized covariates (:func:`covariates`)
with the coefficients of :data:`FRACTURE_COEFS` and :data:`DEATH_COEFS`, plus the log of the
site's ``fracture_hazard_ratio`` for fracture. Three oracle risks use the same closed form:

``full``
    the true hazards of both causes.
``image``
    only what a CT carries (bone density, prevalent fractures, muscle area and density);
    every non-image covariate (age, sex, clinical risk factors, frailty, site) is replaced by
    the fixed population reference value in :data:`IMAGE_REFERENCE`, in both hazards.
``bone``
    as ``image`` but the muscle covariates are also set to their reference (0).

Latent times are drawn independently per cause by inversion, ``T_j = (E_j / lam_j)**(1/k)``
with ``E_j ~ Exp(1)``; censoring is administrative at ``U(5, 7)`` years after the scan or an
exponential loss to follow-up (rate :data:`LOSS_RATE_PER_YEAR`), whichever comes first.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "ADMIN_CENSOR_YEARS",
    "DEATH_COEFS",
    "FRACTURE_COEFS",
    "FRAX_HIP_COEFS",
    "FRAX_MOF_COEFS",
    "IMAGE_REFERENCE",
    "LOSS_RATE_PER_YEAR",
    "WEIBULL_SHAPE",
    "covariates",
    "cumulative_incidence",
    "frax_like",
    "log_hazards",
    "simulate_times",
]

WEIBULL_SHAPE = 1.1
"""Shared Weibull shape ``k`` of both cause-specific hazards (k > 1: hazard rises with time)."""

ADMIN_CENSOR_YEARS = (5.0, 7.0)
"""Administrative end of follow-up, uniform between these years after the scan."""

LOSS_RATE_PER_YEAR = 0.03
"""Rate of random loss to follow-up (exponential), per year."""

# Standardization constants of the covariates (fixed, so a patient's hazard does not depend
# on who else is in the cohort). HU are true trabecular values, before any scanner offset.
_AGE_REF, _AGE_SCALE = 70.0, 8.0  # years
_BONE_REF, _BONE_SCALE = 130.0, 40.0  # HU, mean T12-L4
_MUSCLE_AREA_REF = {"F": 25.5, "M": 32.0}  # cm2, psoas + paraspinal, one side at L3
_MUSCLE_AREA_LOG_SCALE = 0.15  # log(cm2)
_MUSCLE_HU_REF, _MUSCLE_HU_SCALE = 42.0, 7.0  # HU, area-weighted psoas + paraspinal

FRACTURE_COEFS: dict[str, float] = {
    "intercept": np.log(0.019),  # lam_f (per year**k) of the reference patient, all z = 0
    "bone_z": -0.35,  # per 40 HU of mean T12-L4 HU (z = (HU - 130) / 40)
    "prevalent_any": 0.37,  # any Genant grade >= 1 at T12-L4
    "sdi": 0.09,  # spinal deformity index: sum of Genant grades at T12-L4
    "muscle_area_z": -0.23,  # z = log(area / 25.5 F, 32 M cm2) / 0.15
    "muscle_hu_z": -0.23,  # z = (muscle HU - 42) / 7
    "age_z": 0.05,  # z = (age - 70) / 8
    "female": 0.14,
    "glucocorticoids": 0.46,
    "prior_fracture": 0.32,
    "current_smoking": 0.14,
    "rheumatoid_arthritis": 0.14,
    "secondary_osteoporosis": 0.14,
    "frailty": 0.41,  # falls: latent, not in the image nor in the clinical table
}
"""Log-hazard coefficients of incident VF (log hazard ratios per unit of each covariate)."""

DEATH_COEFS: dict[str, float] = {
    "intercept": np.log(0.022),
    "age_z": 0.60,
    "frailty": 0.35,
    "male": 0.40,
    "muscle_area_z": -0.25,
    "muscle_hu_z": -0.25,
    "glucocorticoids": 0.30,
    "secondary_osteoporosis": 0.30,
    "current_smoking": 0.35,
}
"""Log-hazard coefficients of death before fracture."""

IMAGE_REFERENCE: dict[str, float] = {
    "age_z": 0.45,  # age 73.6
    "female": 0.63,
    "male": 0.37,
    "glucocorticoids": 0.06,
    "prior_fracture": 0.19,
    "current_smoking": 0.13,
    "rheumatoid_arthritis": 0.04,
    "secondary_osteoporosis": 0.09,
    "frailty": 0.06,
    "log_site_hr": 0.0,
}
"""Population reference values of the non-image covariates used by ``oracle_image/bone``.

About the means of the default cohort (``dev:0.6,ext_a:0.2,ext_b:0.2``); fixed, so they do
not depend on the simulated sample.
"""

_IMAGE_TERMS = ("bone_z", "prevalent_any", "sdi", "muscle_area_z", "muscle_hu_z")
_BONE_TERMS = ("bone_z", "prevalent_any", "sdi")

FRAX_MOF_COEFS: dict[str, float] = {
    "intercept": -2.45,  # logit at age 65, male, BMI 25, no risk factor
    "age": 0.055,  # per year over 65
    "female": 0.55,
    "bmi": -0.035,  # per kg/m2 over 25
    "prior_fracture": 0.65,
    "parent_hip_fracture": 0.40,
    "current_smoking": 0.15,
    "glucocorticoids": 0.50,
    "rheumatoid_arthritis": 0.30,
    "secondary_osteoporosis": 0.25,
    "alcohol_3plus": 0.20,
}
"""Logistic surrogate of FRAX major osteoporotic fracture probability (SIMULATED, not FRAX)."""

FRAX_HIP_COEFS: dict[str, float] = {
    "intercept": -4.10,
    "age": 0.095,
    "female": 0.35,
    "bmi": -0.075,
    "prior_fracture": 0.60,
    "parent_hip_fracture": 0.35,
    "current_smoking": 0.30,
    "glucocorticoids": 0.60,
    "rheumatoid_arthritis": 0.30,
    "secondary_osteoporosis": 0.25,
    "alcohol_3plus": 0.30,
}
"""Logistic surrogate of FRAX hip fracture probability (SIMULATED, not FRAX)."""


def covariates(
    *,
    age: np.ndarray,
    female: np.ndarray,
    mean_hu: np.ndarray,
    sdi: np.ndarray,
    muscle_area_cm2: np.ndarray,
    muscle_hu: np.ndarray,
) -> dict[str, np.ndarray]:
    """Standardized hazard covariates derived from the simulated truth.

    Parameters
    ----------
    age : ndarray, shape (n,)
        Age at scan, years.
    female : ndarray of bool, shape (n,)
    mean_hu : ndarray, shape (n,)
        Mean true trabecular attenuation of T12-L4, HU.
    sdi : ndarray of int, shape (n,)
        Sum of Genant grades at T12-L4.
    muscle_area_cm2 : ndarray, shape (n,)
        Psoas plus paraspinal area of one side at L3, cm2.
    muscle_hu : ndarray, shape (n,)
        Area-weighted mean attenuation of that muscle, HU.

    Returns
    -------
    dict of str to ndarray, shape (n,)
        ``age_z``, ``female``, ``male``, ``bone_z``, ``prevalent_any``, ``sdi``,
        ``muscle_area_z``, ``muscle_hu_z``.
    """
    female = np.asarray(female, dtype=bool)
    area_ref = np.where(female, _MUSCLE_AREA_REF["F"], _MUSCLE_AREA_REF["M"])
    return {
        "age_z": (np.asarray(age, float) - _AGE_REF) / _AGE_SCALE,
        "female": female.astype(float),
        "male": (~female).astype(float),
        "bone_z": (np.asarray(mean_hu, float) - _BONE_REF) / _BONE_SCALE,
        "prevalent_any": (np.asarray(sdi) > 0).astype(float),
        "sdi": np.asarray(sdi, float),
        "muscle_area_z": np.log(np.asarray(muscle_area_cm2, float) / area_ref)
        / _MUSCLE_AREA_LOG_SCALE,
        "muscle_hu_z": (np.asarray(muscle_hu, float) - _MUSCLE_HU_REF) / _MUSCLE_HU_SCALE,
    }


def _linear(coefs: Mapping[str, float], x: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    eta = np.full(n, coefs["intercept"], dtype=float)
    for name, beta in coefs.items():
        if name != "intercept":
            eta += beta * np.asarray(x[name], dtype=float)
    return eta


def log_hazards(
    x: Mapping[str, np.ndarray], log_site_hr: np.ndarray, kind: str = "full"
) -> tuple[np.ndarray, np.ndarray]:
    """Log Weibull scales ``(log lam_f, log lam_d)`` of fracture and death.

    Parameters
    ----------
    x : mapping of str to ndarray, shape (n,)
        Every covariate named in :data:`FRACTURE_COEFS` and :data:`DEATH_COEFS`.
    log_site_hr : ndarray, shape (n,)
        Log of the site's ``fracture_hazard_ratio``.
    kind : {'full', 'image', 'bone'}
        Which covariates keep their own value; the others take :data:`IMAGE_REFERENCE`
        (muscle z-scores take 0 under ``'bone'``).

    Returns
    -------
    log_lam_f, log_lam_d : ndarray, shape (n,)
        In log(1 / year**k).
    """
    if kind not in ("full", "image", "bone"):
        raise ValueError(f"kind must be 'full', 'image' or 'bone', got {kind!r}")
    n = len(log_site_hr)
    if kind == "full":
        xs = dict(x)
        site = np.asarray(log_site_hr, dtype=float)
    else:
        keep = _IMAGE_TERMS if kind == "image" else _BONE_TERMS
        xs = {k: np.full(n, v) for k, v in IMAGE_REFERENCE.items()}
        xs["muscle_area_z"] = np.zeros(n)
        xs["muscle_hu_z"] = np.zeros(n)
        xs.update({k: x[k] for k in keep})
        site = np.full(n, IMAGE_REFERENCE["log_site_hr"])
    return _linear(FRACTURE_COEFS, xs, n) + site, _linear(DEATH_COEFS, xs, n)


def cumulative_incidence(
    lam_f: np.ndarray, lam_d: np.ndarray, t: float, shape: float = WEIBULL_SHAPE
) -> np.ndarray:
    """Cumulative incidence of fracture by ``t`` with death as competing risk.

    ``CIF_f(t) = lam_f / (lam_f + lam_d) * (1 - exp(-(lam_f + lam_d) * t**shape))``.

    Parameters
    ----------
    lam_f, lam_d : ndarray, shape (n,)
        Weibull scales of fracture and death, 1 / year**shape.
    t : float
        Horizon, years.
    shape : float
        Shared Weibull shape.

    Returns
    -------
    ndarray, shape (n,)
        Absolute risk in [0, 1].
    """
    total = lam_f + lam_d
    return lam_f / total * -np.expm1(-total * t**shape)


def simulate_times(
    lam_f: np.ndarray, lam_d: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latent fracture, death and censoring times, years.

    Parameters
    ----------
    lam_f, lam_d : ndarray, shape (n,)
        Weibull scales, 1 / year**k.
    rng : numpy.random.Generator

    Returns
    -------
    time_fracture, time_death, time_censor : ndarray, shape (n,)
    """
    n = len(lam_f)
    inv_k = 1.0 / WEIBULL_SHAPE
    time_fracture = (rng.exponential(size=n) / lam_f) ** inv_k
    time_death = (rng.exponential(size=n) / lam_d) ** inv_k
    admin = rng.uniform(*ADMIN_CENSOR_YEARS, size=n)
    loss = rng.exponential(1.0 / LOSS_RATE_PER_YEAR, size=n)
    return time_fracture, time_death, np.minimum(admin, loss)


def frax_like(x: Mapping[str, np.ndarray], coefs: Mapping[str, float]) -> np.ndarray:
    """SIMULATED FRAX-like 10-year probability, percent, from clinical factors only.

    FRAX is a closed calculator; this logistic surrogate uses the same inputs without BMD
    (age, sex, BMI and the FRAX risk factors) and reproduces plausible magnitudes only.

    Parameters
    ----------
    x : mapping of str to ndarray, shape (n,)
        ``age`` (years), ``female`` (0/1), ``bmi`` (kg/m2) and the 0/1 risk factors named
        in ``coefs``.
    coefs : mapping of str to float
        :data:`FRAX_MOF_COEFS` or :data:`FRAX_HIP_COEFS`.

    Returns
    -------
    ndarray, shape (n,)
        Probability in percent (0-100), one decimal.
    """
    z = {
        **x,
        "age": np.asarray(x["age"], float) - 65.0,
        "bmi": np.asarray(x["bmi"], float) - 25.0,
    }
    eta = _linear(coefs, z, len(z["age"]))
    return np.round(100.0 / (1.0 + np.exp(-eta)), 1)
