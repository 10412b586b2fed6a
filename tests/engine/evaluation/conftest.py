"""Shared datasets for the evaluation tests: real datasets the libraries ship, as targets."""

from __future__ import annotations

import numpy as np
import pytest

from engine.evaluation import SurvivalTarget


def _whas500():
    from sksurv.datasets import load_whas500

    x, y = load_whas500()
    return y["lenfol"] / 365.25, y["fstat"], x["age"].to_numpy(float)


def _gbsg2():
    from sksurv.datasets import load_gbsg2

    x, y = load_gbsg2()
    return y["time"] / 365.25, y["cens"], x["pnodes"].to_numpy(float)


def _veterans():
    from sksurv.datasets import load_veterans_lung_cancer

    x, y = load_veterans_lung_cancer()
    return y["Survival_in_days"] / 365.25, y["Status"], -x["Karnofsky_score"].to_numpy(float)


def _rossi():
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi

    df = load_rossi()
    cph = CoxPHFitter().fit(df, duration_col="week", event_col="arrest")
    risk = cph.predict_partial_hazard(df).to_numpy(float)
    return df["week"].to_numpy(float) / 52.0, df["arrest"].to_numpy(bool), risk


DATASETS = {"whas500": _whas500, "gbsg2": _gbsg2, "veterans": _veterans, "rossi": _rossi}


@pytest.fixture(params=sorted(DATASETS))
def real_data(request: pytest.FixtureRequest) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(name, time in years, event bool, risk score) of a real dataset."""
    t, e, s = DATASETS[request.param]()
    return request.param, np.asarray(t, float), np.asarray(e, bool), np.asarray(s, float)


def _make_target(t: np.ndarray, e: np.ndarray) -> SurvivalTarget:
    return SurvivalTarget.from_arrays(t, e.astype(int))


@pytest.fixture
def make_target():
    """Function (time, event bool) -> SurvivalTarget."""
    return _make_target


@pytest.fixture
def simulate_competing():
    """Function (n, seed) -> (SurvivalTarget, x): a seeded competing-risks cohort."""
    return _simulate_competing


def _simulate_competing(n: int, seed: int) -> tuple[SurvivalTarget, np.ndarray]:
    """Exponential fracture and death hazards, uniform censoring; returns (target, x)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    t_f = rng.exponential(1.0 / (0.08 * np.exp(0.8 * x)))
    t_d = rng.exponential(1.0 / 0.05, n)
    t_c = rng.uniform(2.0, 8.0, n)
    t = np.minimum(np.minimum(t_f, t_d), t_c)
    e = np.where(t == t_c, 0, np.where(t_f < t_d, 1, 2))
    return SurvivalTarget.from_arrays(t, e), x
