"""From day counts to curves per group: the glue between the survival queries and figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.stats import CountCurve, km_from_counts, logrank_from_counts
from engine.store.dashboard_tables import DAYS_PER_YEAR

__all__ = ["at_risk_table", "calibration_points", "group_curves", "group_logrank"]


def _curve(g: pd.DataFrame) -> CountCurve:
    return km_from_counts(g["day"].to_numpy(float) / DAYS_PER_YEAR, g["events"], g["censored"])


def group_curves(counts: pd.DataFrame, sizes: pd.DataFrame, score: str) -> dict[str, CountCurve]:
    """One Kaplan-Meier curve per (site, group), named by site and the group's score range."""
    out: dict[str, CountCurve] = {}
    ranges = {(r.site, r.grp): (r.lo, r.hi) for r in sizes.itertuples()}
    k = int(sizes["grp"].max()) if len(sizes) else 0
    for (site, grp), g in counts.groupby(["site", "grp"], sort=True):
        lo, hi = ranges[(site, grp)]
        name = f"{site}: group {grp}/{k} ({score} {lo:.3g}-{hi:.3g})"
        out[name] = _curve(g)
    return out


def group_logrank(counts: pd.DataFrame) -> dict[str, tuple[float, int, float]]:
    """Log-rank test across the risk groups within each site: site -> (chi2, df, p)."""
    return {
        site: logrank_from_counts(
            g["grp"], g["day"].to_numpy(float) / DAYS_PER_YEAR, g["events"], g["censored"]
        )
        for site, g in counts.groupby("site", sort=True)
    }


def at_risk_table(curves: dict[str, CountCurve], years: tuple[float, ...]) -> pd.DataFrame:
    """Numbers at risk per curve at each of ``years``."""
    return pd.DataFrame(
        {"curve": list(curves)}
        | {f"{t:g} y": [c.number_at_risk(t) for c in curves.values()] for t in years}
    )


def calibration_points(bins: pd.DataFrame, counts: pd.DataFrame, horizon: float) -> pd.DataFrame:
    """Observed incidence (1 - KM) at ``horizon`` with its CI for each (site, bin).

    Returns ``bins`` with ``observed, lo, hi`` added.
    """
    rows = []
    for (site, b), g in counts.groupby(["site", "bin"], sort=True):
        s, lo, hi = _curve(g).at(horizon)
        rows.append((site, b, 1 - s, 1 - hi, 1 - lo))
    obs = pd.DataFrame(rows, columns=["site", "bin", "observed", "lo", "hi"])
    out = bins.merge(obs, on=["site", "bin"], how="left")
    out[["observed", "lo", "hi"]] = out[["observed", "lo", "hi"]].astype(float).fillna(np.nan)
    return out
