"""The ``[report]`` configuration section as a typed, checked record."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import Config
from engine.errors import VfriskError

__all__ = ["RISK_HORIZONS", "ReportSettings", "settings_from_config"]

#: Horizons (years) that ``predictions`` holds a risk column for (risk_1y .. risk_5y).
RISK_HORIZONS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class ReportSettings:
    """How ``vfrisk report`` evaluates (``engine/default_config.toml``, ``[report]``).

    Parameters
    ----------
    horizons : tuple of int
        Years, increasing, each in 1..5 (a ``risk_<h>y`` column). td-AUC, Brier and
        calibration at each; the c-index is of the risk at the last (Uno's truncated there).
    risk_groups : int
        Quantile groups of the last-horizon risk in the incidence figure.
    age_bands : tuple of int
        Lower edges (years) of the age-band subgroups.
    subgroups : bool
        Evaluate by sex and age band too.
    min_cell_count : int
        Counts below this are suppressed in exports; groups with fewer events (or
        non-events) than this get no metrics.
    ci : str
        "auto", "bootstrap", "influence" or "none" (``engine.evaluation.bootstrap``).
    n_boot, bootstrap_max_n, seed : int
        Bootstrap resamples, largest n bootstrapped under "auto", seed.
    alpha : float
        1 - confidence level.
    """

    horizons: tuple[int, ...] = (2, 3, 5)
    risk_groups: int = 3
    age_bands: tuple[int, ...] = (50, 60, 70, 80)
    subgroups: bool = True
    min_cell_count: int = 5
    ci: str = "auto"
    n_boot: int = 1000
    bootstrap_max_n: int = 2000
    seed: int = 0
    alpha: float = 0.05

    def __post_init__(self) -> None:
        h = self.horizons
        checks = (
            (
                "horizons",
                len(h) > 0
                and all(int(x) == x and x in RISK_HORIZONS for x in h)
                and list(h) == sorted(set(h)),
                f"increasing whole years among {list(RISK_HORIZONS)} (risk_1y .. risk_5y)",
            ),
            ("risk_groups", 2 <= self.risk_groups <= 10, "between 2 and 10"),
            ("age_bands", list(self.age_bands) == sorted(set(self.age_bands)), "increasing"),
            ("min_cell_count", self.min_cell_count >= 1, ">= 1"),
            (
                "ci",
                self.ci in ("auto", "bootstrap", "influence", "none"),
                "'auto', 'bootstrap', 'influence' or 'none'",
            ),
            ("n_boot", self.n_boot >= 50, ">= 50"),
            ("bootstrap_max_n", self.bootstrap_max_n >= 0, ">= 0"),
            ("alpha", 0 < self.alpha < 1, "in (0, 1)"),
        )
        for key, ok, expected in checks:
            if not ok:
                raise VfriskError(
                    "bad_config",
                    f"[report] {key} = {getattr(self, key)!r} must be {expected}; fix the "
                    "configuration file",
                )

    @property
    def c_horizon(self) -> int:
        """The horizon (years) whose risk the c-index ranks: the last one."""
        return int(self.horizons[-1])

    def ci_kwargs(self) -> dict[str, object]:
        """Keyword arguments of the interval for ``engine.evaluation`` metrics."""
        return {
            "ci": self.ci,
            "n_boot": self.n_boot,
            "bootstrap_max_n": self.bootstrap_max_n,
            "alpha": self.alpha,
            "seed": self.seed,
        }


def settings_from_config(config: Config) -> ReportSettings:
    """The ``[report]`` section of a merged configuration, checked."""
    s = config["report"]
    return ReportSettings(
        horizons=tuple(int(x) if float(x).is_integer() else float(x) for x in s["horizons"]),
        risk_groups=int(s["risk_groups"]),
        age_bands=tuple(int(x) for x in s["age_bands"]),
        subgroups=bool(s["subgroups"]),
        min_cell_count=int(s["min_cell_count"]),
        ci=str(s["ci"]),
        n_boot=int(s["n_boot"]),
        bootstrap_max_n=int(s["bootstrap_max_n"]),
        seed=int(s["seed"]),
        alpha=float(s["alpha"]),
    )
