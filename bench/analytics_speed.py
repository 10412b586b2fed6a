"""Benchmark: a full per-site evaluation report on synthetic predictions and outcomes.

For each total size (10k, 100k, 1M patients over the three default sites) the outcomes of
``engine.synth.population.simulate_population`` are evaluated site by site: Harrell c-index
with 95 % CI (bootstrap at n <= 2,000, influence function above), Uno c-index (tau 5 y),
cumulative/dynamic AUROC at 2/3/5 y, Brier score and integrated Brier, calibration
(table by decile, intercept, slope, ICI) at 2/3/5 y, Kaplan-Meier / Aalen-Johansen by risk
tertile with log-rank, a paired comparison against the FRAX-like score, and a decision
curve at 5 y. The "model" is the simulation's image-only oracle risk ``oracle_image_*``;
the comparator is ``frax_mof`` (10-year %, rescaled to 5 years). Seconds per size and the
fitted scaling exponent (slope of log time on log n) are printed; goal: exponent <= 1.2
and 1M under 60 s on 2 cores. Simulation time is excluded.

Usage: python bench/analytics_speed.py [--sizes 10000 100000 1000000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from engine.evaluation import (
    SurvivalTarget,
    brier_score,
    calibration,
    calibration_table,
    compare_concordance,
    cumulative_dynamic_auc,
    curves_by_risk_group,
    harrell_c,
    net_benefit,
    uno_c,
)
from engine.synth.population import simulate_population
from engine.synth.profiles import DEFAULT_SITES_SPEC, load_profiles, parse_sites_spec

HORIZONS = (2.0, 3.0, 5.0)


def evaluate_site(df: pd.DataFrame) -> dict[str, float]:
    """Every metric of the per-site report; returns the headline numbers."""
    target = SurvivalTarget.from_arrays(df["followup_years"], df["event_type"])
    risk = np.column_stack([df[f"oracle_image_{int(h)}y"] for h in HORIZONS])
    model = risk[:, -1]
    frax5 = 1.0 - (1.0 - df["frax_mof"].to_numpy() / 100.0) ** 0.5
    c = harrell_c(target, model)
    uno = uno_c(target, model, tau=5.0, ci="none")
    auc = cumulative_dynamic_auc(target, risk, HORIZONS)
    brier = brier_score(target, risk, HORIZONS)
    for j, h in enumerate(HORIZONS):
        calibration(target, risk[:, j], h)
        calibration_table(target, risk[:, j], h)
    curves_by_risk_group(target, model, groups=3)
    cmp = compare_concordance(target, model, frax5)
    net_benefit(target, model, 5.0, comparator=frax5)
    return {"c": c.estimate, "uno": uno.estimate, "auc5": auc.estimate[-1],
            "ibs": brier.integrated, "c_vs_frax": cmp.difference}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    profiles = load_profiles()
    weights = parse_sites_spec(DEFAULT_SITES_SPEC, profiles)
    seconds = []
    for n in args.sizes:
        pop = simulate_population(n, weights, profiles, args.seed)
        start = time.perf_counter()
        heads = {site: evaluate_site(part) for site, part in pop.groupby("site", sort=False)}
        seconds.append(time.perf_counter() - start)
        d = heads.get("dev", next(iter(heads.values())))
        print(
            f"n={n:>9,d}  {seconds[-1]:8.2f} s   (dev: c={d['c']:.3f} uno={d['uno']:.3f} "
            f"auc5={d['auc5']:.3f} ibs={d['ibs']:.4f} c-frax={d['c_vs_frax']:+.3f})"
        )
    if len(seconds) > 1:
        slope = np.polyfit(np.log(args.sizes), np.log(seconds), 1)[0]
        print(f"scaling exponent (log s / log n): {slope:.2f}  (goal <= 1.2)")


if __name__ == "__main__":
    main()
