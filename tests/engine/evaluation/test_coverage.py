from __future__ import annotations

import numpy as np
import pytest

from engine.evaluation import SurvivalTarget, harrell_c


def _cohort(n: int, rng: np.random.Generator) -> tuple[SurvivalTarget, np.ndarray]:
    x = rng.standard_normal(n)
    t_f = rng.exponential(1.0 / (0.15 * np.exp(0.7 * x)))
    t_d = rng.exponential(1.0 / 0.05, n)
    t_c = rng.uniform(1.0, 6.0, n)
    t = np.minimum(np.minimum(t_f, t_d), t_c)
    e = np.where(t == t_c, 0, np.where(t_f < t_d, 1, 2))
    return SurvivalTarget.from_arrays(t, e), x


@pytest.mark.slow
def test_c_index_ci_coverage_against_large_sample_truth():
    # Truth: Harrell's C of the same model (same censoring) on 1,000,000 patients;
    # its Monte Carlo error (~0.0004) is small beside the cohort se (~0.03).
    rng = np.random.default_rng(2024)
    big, xb = _cohort(1_000_000, rng)
    truth = harrell_c(big, xb, ci="none").estimate
    hits = {"bootstrap": 0, "influence": 0}
    n_cohorts = 500
    for k in range(n_cohorts):
        tg, x = _cohort(300, rng)
        for method in hits:
            r = harrell_c(tg, x, ci=method, n_boot=1000, seed=k)
            hits[method] += r.ci_low <= truth <= r.ci_high
    rates = {m: h / n_cohorts for m, h in hits.items()}
    print(f"true C = {truth:.4f}; coverage of 95 % CIs over {n_cohorts} cohorts: {rates}")
    for rate in rates.values():
        assert 0.92 <= rate <= 0.98
